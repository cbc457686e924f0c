# triad — developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DELETE_ON_ERROR:
.SUFFIXES:

GO        ?= go
BIN       := $(CURDIR)/.bin
DIST      := $(CURDIR)/dist
BUF       := $(BIN)/buf
PROTOGEN  := $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
BINARIES  := triad triad-agent triad-cloud-local triad-cloud-aws
GOTESTFLAGS ?=
CACHE     := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/triad/bin
CRICTL_VERSION := $(shell awk '$$1 == "sigs.k8s.io/cri-tools" {print $$2}' tools/crictl/go.mod)
CRICTL    := $(CACHE)/crictl-$(CRICTL_VERSION)/crictl
# Evaluated only when used: reading the pin resolves the tools/k8s module.
K8S_VERSION = $(shell cd tools/k8s && $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
K8S_BIN     = $(CACHE)/$(K8S_VERSION)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- tools (pinned in tools/*/go.mod, built into .bin) ----------------------

$(BUF): tools/buf/go.mod tools/buf/go.sum
	@echo ">> building buf (pinned in tools/buf/go.mod; a few minutes on a cold cache)"
	cd tools/buf && $(GO) build -o $@ github.com/bufbuild/buf/cmd/buf

$(BIN)/protoc-gen-go: tools/protogen/go.mod tools/protogen/go.sum
	cd tools/protogen && $(GO) build -o $@ google.golang.org/protobuf/cmd/protoc-gen-go

$(BIN)/protoc-gen-go-grpc: tools/protogen/go.mod tools/protogen/go.sum
	cd tools/protogen && $(GO) build -o $@ google.golang.org/grpc/cmd/protoc-gen-go-grpc

# crictl (cri-tools) proves the local cloud's container runtime speaks CRI;
# cached outside the repository, keyed by version.
$(CRICTL): # keyed by version in its path: built once per version, not per clone
	@echo ">> building crictl $(CRICTL_VERSION) into $(dir $@) (a minute or two on a cold cache)"
	cd tools/crictl && $(GO) build -o $@ sigs.k8s.io/cri-tools/cmd/crictl

.PHONY: k8s-binaries
k8s-binaries: ## Build etcd, kube-apiserver, kcm, scheduler, kubeadm, kubectl, kubelet, kwok from pinned sources into the cache.
	./hack/build-k8s.sh

.PHONY: tools
tools: $(BUF) $(PROTOGEN) $(CRICTL) ## Build the pinned developer tools.

# --- code generation ---------------------------------------------------------

.PHONY: generate
generate: $(BUF) $(PROTOGEN) ## Regenerate the Go code of the protos (committed).
	find proto -name '*.pb.go' -delete
	$(BUF) generate

.PHONY: check-generate
check-generate: generate ## Fail if the committed generated code differs from `make generate`.
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		git status --porcelain -- proto; git diff --stat -- proto; \
		echo "generated code is stale: run 'make generate' and commit"; exit 1; fi

# --- build -------------------------------------------------------------------

.PHONY: build
build: ## Build the binaries into dist/.
	@mkdir -p $(DIST)
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ]; then $(GO) build -o $(DIST)/$$b ./cmd/$$b; echo "built dist/$$b"; \
		else echo "skipping $$b: cmd/$$b does not exist yet"; fi; done

# --- checks ------------------------------------------------------------------

.PHONY: lint
lint: $(BUF) ## gofmt, go vet, go mod tidy check and buf lint.
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(BUF) lint

.PHONY: breaking
breaking: $(BUF) ## buf breaking against main (once main has protos).
	@if git cat-file -e main:proto 2>/dev/null; then \
		$(BUF) breaking --against '.git#branch=main'; \
	else echo "main has no protos yet: nothing to compare against"; fi

.PHONY: unit
unit: $(CRICTL) k8s-binaries ## Unit tests (race detector on; the local cloud's runtime is tested under the real kubelet).
	TRIAD_CRICTL=$(CRICTL) TRIAD_K8S_BIN=$(K8S_BIN) $(GO) test -race -count=1 $(GOTESTFLAGS) ./...

.PHONY: e2e
# Where a failed e2e test keeps the local cloud's logs, and where the whole
# e2e output goes (the console shows a line per test and, last, the tail of
# each failed test's output: CI keeps only a log's head and tail).
E2E_ARTIFACTS ?= $(or $(TRIAD_E2E_ARTIFACTS),/tmp/triad-e2e-artifacts)

e2e: k8s-binaries ## End-to-end tests: real binaries (triad, etcd, kube-apiserver, ...) on loopback.
	TRIAD_K8S_BIN=$(K8S_BIN) TRIAD_E2E_ARTIFACTS=$(E2E_ARTIFACTS) $(GO) test -json -tags e2e -count=1 -timeout 45m $(GOTESTFLAGS) ./e2e/... 2>&1 \
		| $(GO) run ./hack/testsummary -log $(E2E_ARTIFACTS)/e2e-$$(date -u +%Y%m%d-%H%M%S).log

.PHONY: conformance-aws
conformance-aws: ## Conformance suite against a real AWS account (costs money; TRIAD_AWS_CONFORMANCE=fixture.json, cloudplugins/aws/CONFORMANCE.md).
	@if [ -z "$${TRIAD_AWS_CONFORMANCE:-}" ]; then \
		echo "conformance-aws: TRIAD_AWS_CONFORMANCE is not set: nothing run (TestConformanceAgainstARealAccount skips without it)."; \
		echo "  The suite creates EC2 instances, AMIs, EBS snapshots and NLBs in a real AWS account; set it up as"; \
		echo "  cloudplugins/aws/CONFORMANCE.md says, then: make conformance-aws TRIAD_AWS_CONFORMANCE=path/to/fixture.json"; \
		exit 0; fi; \
	fixture=$$TRIAD_AWS_CONFORMANCE; case "$$fixture" in /*) ;; *) fixture="$(CURDIR)/$$fixture";; esac; \
	echo "TRIAD_AWS_CONFORMANCE=$$fixture go test -count=1 -timeout 60m -run TestConformanceAgainstARealAccount -v ./cloudplugins/aws/"; \
	TRIAD_AWS_CONFORMANCE="$$fixture" $(GO) test -count=1 -timeout 60m $(GOTESTFLAGS) -run TestConformanceAgainstARealAccount -v ./cloudplugins/aws/

.PHONY: test
test: lint check-generate breaking unit e2e ## Everything CI runs: lint, generated-code drift, unit and e2e tests.

.PHONY: bench
bench: build k8s-binaries ## Benchmarks, with ratios against baselines measured in the same run.
	TRIAD_K8S_BIN=$(K8S_BIN) ./hack/bench.sh

.PHONY: demo
demo: build k8s-binaries ## Run the main job on the local cloud: a single-node cluster migrated live to three nodes, then upgraded node by node.
	K8S_BIN=$(K8S_BIN) ./hack/demo.sh
