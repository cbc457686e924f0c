package aws

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
	"github.com/triad-k8s/triad/cloudplugins/conformance"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// The conformance suite against a real AWS account: `make conformance-aws`,
// step by step in CONFORMANCE.md. It costs money and needs an account set up
// for it, so it runs only when TRIAD_AWS_CONFORMANCE names a fixture file.

const (
	realFixtureEnv = "TRIAD_AWS_CONFORMANCE"
	// realRunLabel is on everything this run creates, with the run's id:
	// what the cleanup deletes by, and what to search for after a killed run.
	realRunLabel = "triad.dev/conformance-run"
	// realOperationLabel is added too (when the suite sets none) so that the
	// README's IAM policy, which lets the plugin terminate instances and
	// delete snapshots only when they carry triad.dev/operation, lets the
	// suite and the cleanup delete what the suite created.
	realOperationLabel = "triad.dev/operation"
	// realMinTime is the least time the test wants before go test's deadline.
	realMinTime = 30 * time.Minute
)

// realNoBackends is why the health-check case is skipped on a real account.
const realNoBackends = "on a real account the suite cannot serve backends from the test machine: " +
	"HealthChecksDecideWhichBackendsGetTraffic needs instances that answer the NLB's HTTPS health check on the gate " +
	"(triad-agent's gate) and accept connections on the listener port, and a test machine that reaches the internal NLB; " +
	"the instances this suite creates are copies of the seed running whatever the seed runs. " +
	"Prove this case with a migration of a test cluster (cloudplugins/aws/CONFORMANCE.md)"

// TestConformanceAgainstARealAccount runs conformance.Run against AWS with
// the provider built as TestConformanceInProcess builds it (New, in
// process), credentials from the SDK's standard chain.
//
// A real account differs from the fake in three ways the harness handles:
//
//   - One world for every case. The fake is fresh per case; here each case
//     starts with the seed running and holding both addresses (restored if
//     the previous case left it stopped), and ends with everything the
//     run created deleted (sweep).
//   - Labels and tokens. The suite's own labels ("conformance", "conc", or
//     none for load balancers) and idempotency tokens ("vm-token-0", …) are
//     fixed. The factory hands the suite a wrapping provider that adds
//     triad.dev/conformance-run=<run id> (and triad.dev/operation) to every
//     create and suffixes every valid token with the run id: the cleanup then
//     finds exactly this run's resources, and a second run does not meet the
//     first run's client tokens (EC2 keeps a RunInstances client token after
//     the request; its idempotency guide says not to reuse one). Invalid
//     tokens (empty, too long) are passed unchanged: the suite checks the
//     plugin refuses them.
//   - Time. The suite bounds each case by a 2-minute context (conformance.go,
//     ctx); an NLB alone takes minutes to become active on AWS. The wrapper
//     detaches calls from that context and bounds each by twice the
//     plugin's waitTimeout instead, and all of them by go test's deadline
//     less a cleanup reserve, so that a run out of time fails its case and
//     still cleans up (a go test timeout panic would skip every cleanup).
func TestConformanceAgainstARealAccount(t *testing.T) {
	path := os.Getenv(realFixtureEnv)
	if path == "" {
		t.Skipf("%s is not set: this test runs the conformance suite against a real AWS account (it creates EC2 instances, "+
			"disk snapshots (AMIs, EBS snapshots) and network load balancers, which cost money); set it to a fixture file as described in "+
			"cloudplugins/aws/CONFORMANCE.md, or run make conformance-aws", realFixtureEnv)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		abs, _ := filepath.Abs(path)
		t.Fatalf("%s=%s: %v (a relative path is relative to cloudplugins/aws, go test's working directory, here %s; "+
			"make conformance-aws resolves it from the repository root)", realFixtureEnv, path, err, abs)
	}
	fx, err := parseRealFixture(raw)
	if err != nil {
		t.Fatalf("%s=%s: %v", realFixtureEnv, path, err)
	}
	realCredentials(t, fx.Config)
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < realMinTime {
		t.Fatalf("go test's -timeout leaves %s; the suite on AWS takes tens of minutes and its cleanup needs %s more: "+
			"run with -timeout 60m (make conformance-aws does)", time.Until(deadline).Round(time.Second), realCleanupReserve)
	}

	p, err := New(t.Context(), fx.Config)
	if err != nil {
		t.Fatal(err)
	}
	runRealConformance(t, newRealRun(t, p, fx, realCleanupReserve))
}

// realCleanupReserve is the time kept after the suite's calls for cleanup:
// deleting two NLBs (each until its address is free), a few instances
// (until terminated) and snapshots.
const realCleanupReserve = 10 * time.Minute

// realCredentials skips the test, saying what is missing, unless the SDK's
// standard chain yields credentials.
func realCredentials(t *testing.T, cfg Config) {
	t.Helper()
	const chain = "the SDK's default chain looks at AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), " +
		"AWS_PROFILE with ~/.aws/config and ~/.aws/credentials (SSO included), AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, " +
		"container credentials and an EC2 instance role"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	sdkCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		t.Skipf("no AWS credentials: loading the SDK configuration failed: %v (%s)", err, chain)
	}
	if sdkCfg.Credentials == nil {
		t.Skipf("no AWS credentials: the SDK configuration has no credentials provider (%s)", chain)
	}
	creds, err := sdkCfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Skipf("no AWS credentials: %v (%s)", err, chain)
	}
	if sdkCfg.Region == "" {
		t.Fatal("no AWS region: set config.region in the fixture, or AWS_REGION")
	}
	t.Logf("AWS credentials from %s, region %s", creds.Source, sdkCfg.Region)
}

// realFixture is the fixture file:
//
//	{"config": {…cloud.config…}, "seedInstance": "i-…", "privateAddress": "10.0.1.10",
//	 "publicAddress": "eipalloc-…", "settle": "90s"}
type realFixture struct {
	Config         Config
	Seed           string
	PrivateAddress string
	PublicAddress  string
	// Settle is conformance.Fixture.Settle: how long health checks get to
	// reach a verdict (only the health-check case uses it).
	Settle time.Duration
}

var realFixtureFields = []string{"config", "seedInstance", "privateAddress", "publicAddress", "settle"}

// parseRealFixture decodes a fixture strictly: unknown fields are errors,
// like DisallowUnknownFields, but every problem is reported at once, each
// with its field (DisallowUnknownFields stops at the first).
func parseRealFixture(raw []byte) (realFixture, error) {
	var fx realFixture
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fx, fmt.Errorf("fixture: not a JSON object: %w", err)
	}
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(realFixtureFields, k) {
			bad(k, "unknown field (the fields are %s)", strings.Join(realFixtureFields, ", "))
		}
	}
	str := func(field string) string {
		v, ok := fields[field]
		if !ok {
			return ""
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			bad(field, "must be a string")
		}
		return s
	}

	// privateAddresses as written, for the check of privateAddress below
	// even when the configuration has problems of its own.
	var listed []string
	c, configGiven := fields["config"]
	configGiven = configGiven && string(c) != "null"
	if !configGiven {
		bad("config", "required: the plugin configuration, the same object as the cluster file's cloud.config")
	} else if cfg, err := ParseConfig(c); err != nil {
		var loose struct {
			PrivateAddresses []string `json:"privateAddresses"`
		}
		_ = json.Unmarshal(c, &loose)
		listed = loose.PrivateAddresses
		// ParseConfig names fields cloud.config.<field>; in the fixture they
		// are config.<field>. Its first line is a header when it lists several.
		lines := strings.Split(err.Error(), "\n")
		if len(lines) > 1 {
			lines = lines[1:]
		}
		for _, l := range lines {
			l = strings.TrimPrefix(strings.TrimSpace(l), "aws plugin: ")
			problems = append(problems, strings.ReplaceAll(l, "cloud.config", "config"))
		}
	} else {
		fx.Config, listed = cfg, cfg.PrivateAddresses
	}

	fx.Seed = str("seedInstance")
	if !strings.HasPrefix(fx.Seed, "i-") {
		bad("seedInstance", "required: the id (i-…) of the running instance the suite stops, snapshots and restarts (got %q)", fx.Seed)
	}
	fx.PrivateAddress = str("privateAddress")
	if ip, err := netip.ParseAddr(fx.PrivateAddress); err != nil || !ip.Is4() {
		bad("privateAddress", "required: the seed's secondary private IPv4 address (got %q)", fx.PrivateAddress)
	} else if configGiven && !slices.Contains(listed, fx.PrivateAddress) {
		bad("privateAddress", "%s is not in config.privateAddresses %v: the plugin manages only the private addresses listed there", fx.PrivateAddress, listed)
	}
	fx.PublicAddress = str("publicAddress")
	if ip, err := netip.ParseAddr(fx.PublicAddress); !strings.HasPrefix(fx.PublicAddress, "eipalloc-") && (err != nil || !ip.Is4()) {
		bad("publicAddress", "required: the allocation id (eipalloc-…) of the Elastic IP associated with the seed (got %q)", fx.PublicAddress)
	}
	if s := str("settle"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			bad("settle", "%q is not a positive duration like \"90s\"", s)
		}
		fx.Settle = d
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fx, fmt.Errorf("fixture:\n  %s", strings.Join(problems, "\n  "))
	}
	return fx, nil
}

// realRun is one run of the suite against one seed.
type realRun struct {
	p  *Provider
	fx realFixture
	// id is the value of realRunLabel on everything this run creates.
	id string
	// base bounds every call the suite makes: it ends reserve before go
	// test's deadline.
	base        context.Context
	callTimeout time.Duration
	reserve     time.Duration
	// cleanupBy is when cleanups must be done (zero: no deadline).
	cleanupBy time.Time
}

func newRealRun(t *testing.T, p *Provider, fx realFixture, reserve time.Duration) *realRun {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	r := &realRun{
		p: p, fx: fx, reserve: reserve,
		id:          time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:]),
		callTimeout: 2*p.cfg.WaitTimeout.Duration + time.Minute,
	}
	base, cancel := context.WithCancel(t.Context())
	if deadline, ok := t.Deadline(); ok {
		base, cancel = context.WithDeadline(t.Context(), deadline.Add(-reserve))
		r.cleanupBy = deadline.Add(-30 * time.Second)
	}
	t.Cleanup(cancel)
	r.base = base
	return r
}

// runRealConformance checks the account, then runs the suite; everything
// the run created is deleted when the test ends, also on failure.
func runRealConformance(t *testing.T, r *realRun) {
	t.Logf("conformance run %s=%s (find its resources by this tag if the run is killed)", realRunLabel, r.id)
	ctx, cancel := r.cleanupContext()
	r.preflight(t, ctx)
	cancel()
	t.Cleanup(func() {
		ctx, cancel := r.cleanupContext()
		defer cancel()
		r.sweep(t, ctx)
		if err := r.restoreSeed(ctx, t.Logf); err != nil {
			t.Errorf("cleanup: leaving the seed as it was (running, holding both addresses): %v", err)
		}
	})
	conformance.Run(t, r.factory)
}

func (r *realRun) cleanupContext() (context.Context, context.CancelFunc) {
	if r.cleanupBy.IsZero() {
		return context.WithTimeout(context.Background(), r.reserve)
	}
	return context.WithDeadline(context.Background(), r.cleanupBy)
}

// factory is the suite's conformance.Factory: each case gets the seed
// running with both addresses, and what it created is swept when it ends.
func (r *realRun) factory(t *testing.T) conformance.Fixture {
	ctx, cancel := r.cleanupContext()
	defer cancel()
	if err := r.restoreSeed(ctx, t.Logf); err != nil {
		t.Fatalf("before the case: the seed must be running and hold both addresses: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := r.cleanupContext()
		defer cancel()
		r.sweep(t, ctx)
	})
	return conformance.Fixture{
		Provider:         &realProvider{Provider: r.p, run: r},
		Seed:             r.fx.Seed,
		PrivateAddressID: r.fx.PrivateAddress,
		PublicAddressID:  r.fx.PublicAddress,
		NoBackends:       realNoBackends,
		Settle:           r.fx.Settle,
	}
}

// preflight fails, changing nothing, unless the account is as the suite
// needs it.
func (r *realRun) preflight(t *testing.T, ctx context.Context) {
	t.Helper()
	var problems []string
	seed, err := r.p.GetInstance(ctx, r.fx.Seed)
	if err != nil {
		t.Fatalf("seedInstance %s: %v", r.fx.Seed, err)
	}
	if seed.DiskID == "" {
		// Not needed by the suite; a control-plane instance has one.
		t.Logf("note: the seed %s has no EBS volume at config.dataDevice %s, unlike a control-plane instance (CONFORMANCE.md)", seed.ID, r.p.cfg.DataDevice)
	}
	if seed.State == sdk.InstanceTerminated {
		problems = append(problems, fmt.Sprintf("the seed %s is terminated", seed.ID))
	}
	live, err := r.p.ListInstances(ctx, nil)
	if err != nil {
		t.Fatalf("ListInstances: %v", err)
	}
	var others []string
	for _, i := range live {
		if i.ID != seed.ID {
			others = append(others, fmt.Sprintf("%s (%s, %s=%q)", i.ID, i.Name, realRunLabel, i.Labels[realRunLabel]))
		}
	}
	if len(others) > 0 {
		problems = append(problems, fmt.Sprintf("the VPC %s holds live instances besides the seed: %s; the suite expects the seed to be the only one "+
			"(BadCreateRequestsAreRefused lists every instance): use a VPC of its own, and delete leftovers of earlier runs (CONFORMANCE.md)", r.p.cfg.VPCID, strings.Join(others, ", ")))
	}
	snaps, err := r.p.ListDiskSnapshots(ctx, nil)
	if err != nil {
		t.Fatalf("ListDiskSnapshots: %v", err)
	}
	for _, s := range snaps {
		if run := s.Labels[realRunLabel]; run != "" {
			problems = append(problems, fmt.Sprintf("disk snapshot %s was left by conformance run %s: delete it (CONFORMANCE.md, leftovers)", s.ID, run))
		}
	}
	lbs, err := r.p.ListLoadBalancers(ctx, nil)
	if err != nil {
		t.Fatalf("ListLoadBalancers: %v", err)
	}
	for _, lb := range lbs {
		if run := lb.Labels[realRunLabel]; run != "" {
			problems = append(problems, fmt.Sprintf("load balancer %s was left by conformance run %s: delete it (CONFORMANCE.md, leftovers)", lb.ID, run))
		}
	}
	for _, id := range []string{r.fx.PrivateAddress, r.fx.PublicAddress} {
		a, h, err := r.p.address(ctx, id)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("address %s: %v", id, err))
		case h.primary:
			problems = append(problems, fmt.Sprintf("privateAddress %s is the primary private IP of %s; it must be a secondary private IP of the seed (README.md, Addresses)", id, h.instance))
		case h.instance != "" && h.instance != seed.ID, h.lb != "", h.foreign != "":
			problems = append(problems, fmt.Sprintf("address %s (%s) is held by %s, not by the seed %s", id, a.IP, h, seed.ID))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("the account is not ready for the suite (nothing was changed):\n  %s", strings.Join(problems, "\n  "))
	}
}

// restoreSeed gives the seed back both addresses and starts it, logging
// what it had to do.
func (r *realRun) restoreSeed(ctx context.Context, logf func(string, ...any)) error {
	for _, id := range []string{r.fx.PrivateAddress, r.fx.PublicAddress} {
		a, err := r.p.GetAddress(ctx, id)
		if err != nil {
			return fmt.Errorf("address %s: %w", id, err)
		}
		switch {
		case a.InstanceID == r.fx.Seed:
			continue
		case a.InstanceID != "" || a.LoadBalancerID != "":
			return fmt.Errorf("address %s (%s) is held by %s%s, not by the seed %s: free it by hand", id, a.IP, a.InstanceID, a.LoadBalancerID, r.fx.Seed)
		}
		if _, err := r.p.AttachAddress(ctx, id, r.fx.Seed); err != nil {
			return fmt.Errorf("attaching address %s to the seed: %w", id, err)
		}
		logf("seed: attached address %s (%s) again", id, a.IP)
	}
	inst, err := r.p.GetInstance(ctx, r.fx.Seed)
	if err != nil {
		return err
	}
	if inst.State != sdk.InstanceRunning {
		if _, err := r.p.StartInstance(ctx, r.fx.Seed); err != nil {
			return fmt.Errorf("starting the seed: %w", err)
		}
		logf("seed: started %s (it was %s)", r.fx.Seed, inst.State)
	}
	return nil
}

// sweep deletes every load balancer, instance and disk snapshot the plugin
// lists with this run's label, logging each; what it cannot delete fails
// the test, since it costs money until deleted by hand.
func (r *realRun) sweep(t *testing.T, ctx context.Context) {
	by := map[string]string{realRunLabel: r.id}
	type item struct{ kind, id, what string }
	deleteAll := func(items []item, del func(context.Context, string) error) {
		var wg sync.WaitGroup
		for _, it := range items {
			wg.Go(func() {
				if err := del(ctx, it.id); err != nil {
					t.Errorf("cleanup: could not delete %s %s (%s): %v; delete it by hand (CONFORMANCE.md, leftovers)", it.kind, it.id, it.what, err)
					return
				}
				t.Logf("cleanup: deleted %s %s (%s)", it.kind, it.id, it.what)
			})
		}
		wg.Wait()
	}
	var items []item
	// Load balancers first: they hold the addresses and list instances.
	if lbs, err := r.p.ListLoadBalancers(ctx, by); err != nil {
		t.Errorf("cleanup: listing load balancers labelled %s=%s: %v", realRunLabel, r.id, err)
	} else {
		items = items[:0]
		for _, lb := range lbs {
			items = append(items, item{"load balancer", lb.ID, fmt.Sprintf("%s, %s on %s", lb.Name, lb.Scheme, lb.IP)})
		}
		deleteAll(items, r.p.DeleteLoadBalancer)
	}
	if insts, err := r.p.ListInstances(ctx, by); err != nil {
		t.Errorf("cleanup: listing instances labelled %s=%s: %v", realRunLabel, r.id, err)
	} else {
		items = items[:0]
		for _, i := range insts {
			items = append(items, item{"instance", i.ID, fmt.Sprintf("%s in %s, %s", i.Name, i.Zone, i.State)})
		}
		deleteAll(items, r.p.DeleteInstance)
	}
	if snaps, err := r.p.ListDiskSnapshots(ctx, by); err != nil {
		t.Errorf("cleanup: listing disk snapshots labelled %s=%s: %v", realRunLabel, r.id, err)
	} else {
		items = items[:0]
		for _, s := range snaps {
			items = append(items, item{"disk snapshot", s.ID, fmt.Sprintf("of %s, %d GiB", s.SourceInstanceID, s.SizeBytes>>30)})
		}
		deleteAll(items, r.p.DeleteDiskSnapshot)
	}
}

// labels adds the run's labels to a create's.
func (r *realRun) labels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	out[realRunLabel] = r.id
	if _, ok := out[realOperationLabel]; !ok {
		out[realOperationLabel] = "conformance-" + r.id
	}
	return out
}

// token makes a valid idempotency token this run's own, keeping it valid
// and the same for the same input; an invalid one is left for the plugin
// to refuse.
func (r *realRun) token(tok string) string {
	if checkToken(tok) != nil {
		return tok
	}
	if s := tok + "-" + r.id; len(s) <= 64 {
		return s
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:8]) + "-" + r.id
}

// detach frees a call from the suite's 2-minute case context, bounding it
// by callTimeout and the run's base context instead.
func (r *realRun) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.callTimeout)
	stop := context.AfterFunc(r.base, cancel)
	return c, func() { stop(); cancel() }
}

// realProvider is the provider the suite sees: the plugin, with the run's
// labels and tokens on every create and calls detached from the suite's
// case deadline (see TestConformanceAgainstARealAccount). The embedded
// Provider forwards methods sdk.Provider may gain with the suite's context;
// an optional interface (which the suite finds by a type assertion) is
// forwarded only if it is written out here, as CheckControlPlane is.
type realProvider struct {
	sdk.Provider
	run *realRun
}

var _ sdk.ControlPlaneChecker = (*realProvider)(nil)

// CheckControlPlane forwards sdk.ControlPlaneChecker, answering
// ErrUnimplemented, as the plugin host does, when the plugin lacks it.
func (w *realProvider) CheckControlPlane(ctx context.Context, req sdk.CheckControlPlaneRequest) ([]sdk.Check, error) {
	checker, ok := w.Provider.(sdk.ControlPlaneChecker)
	if !ok {
		return nil, fmt.Errorf("CheckControlPlane: %w", sdk.ErrUnimplemented)
	}
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return checker.CheckControlPlane(ctx, req)
}

func (w *realProvider) PluginInfo(ctx context.Context) (sdk.PluginInfo, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.PluginInfo(ctx)
}

func (w *realProvider) GetInstance(ctx context.Context, id string) (sdk.Instance, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.GetInstance(ctx, id)
}

func (w *realProvider) ListInstances(ctx context.Context, labels map[string]string) ([]sdk.Instance, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.ListInstances(ctx, labels)
}

func (w *realProvider) CreateInstance(ctx context.Context, req sdk.CreateInstanceRequest) (sdk.Instance, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	req.IdempotencyToken, req.Labels = w.run.token(req.IdempotencyToken), w.run.labels(req.Labels)
	return w.Provider.CreateInstance(ctx, req)
}

func (w *realProvider) StopInstance(ctx context.Context, id string) (sdk.Instance, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.StopInstance(ctx, id)
}

func (w *realProvider) StartInstance(ctx context.Context, id string) (sdk.Instance, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.StartInstance(ctx, id)
}

func (w *realProvider) DeleteInstance(ctx context.Context, id string) error {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.DeleteInstance(ctx, id)
}

func (w *realProvider) CreateDiskSnapshot(ctx context.Context, req sdk.CreateDiskSnapshotRequest) (sdk.DiskSnapshot, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	req.IdempotencyToken, req.Labels = w.run.token(req.IdempotencyToken), w.run.labels(req.Labels)
	return w.Provider.CreateDiskSnapshot(ctx, req)
}

func (w *realProvider) GetDiskSnapshot(ctx context.Context, id string) (sdk.DiskSnapshot, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.GetDiskSnapshot(ctx, id)
}

func (w *realProvider) ListDiskSnapshots(ctx context.Context, labels map[string]string) ([]sdk.DiskSnapshot, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.ListDiskSnapshots(ctx, labels)
}

func (w *realProvider) DeleteDiskSnapshot(ctx context.Context, id string) error {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.DeleteDiskSnapshot(ctx, id)
}

func (w *realProvider) GetAddress(ctx context.Context, id string) (sdk.Address, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.GetAddress(ctx, id)
}

func (w *realProvider) ListAddresses(ctx context.Context) ([]sdk.Address, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.ListAddresses(ctx)
}

func (w *realProvider) ReleaseAddress(ctx context.Context, id string) (sdk.Address, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.ReleaseAddress(ctx, id)
}

func (w *realProvider) AttachAddress(ctx context.Context, addressID, instanceID string) (sdk.Address, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.AttachAddress(ctx, addressID, instanceID)
}

func (w *realProvider) CreateLoadBalancer(ctx context.Context, req sdk.CreateLoadBalancerRequest) (sdk.LoadBalancer, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	req.IdempotencyToken, req.Labels = w.run.token(req.IdempotencyToken), w.run.labels(req.Labels)
	return w.Provider.CreateLoadBalancer(ctx, req)
}

func (w *realProvider) GetLoadBalancer(ctx context.Context, id string) (sdk.LoadBalancer, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.GetLoadBalancer(ctx, id)
}

func (w *realProvider) ListLoadBalancers(ctx context.Context, labels map[string]string) ([]sdk.LoadBalancer, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.ListLoadBalancers(ctx, labels)
}

func (w *realProvider) SetLoadBalancerTraffic(ctx context.Context, id string, enabled bool) (sdk.LoadBalancer, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.SetLoadBalancerTraffic(ctx, id, enabled)
}

func (w *realProvider) SetLoadBalancerBackends(ctx context.Context, id string, instanceIDs []string) (sdk.LoadBalancer, error) {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.SetLoadBalancerBackends(ctx, id, instanceIDs)
}

func (w *realProvider) DeleteLoadBalancer(ctx context.Context, id string) error {
	ctx, cancel := w.run.detach(ctx)
	defer cancel()
	return w.Provider.DeleteLoadBalancer(ctx, id)
}

// TestRealAccountHarnessOnTheFake runs the real-account harness (preflight,
// wrapper, seed restore, sweeps) against one fake shared by every case, as
// an account is: what it proves is the harness, not AWS.
func TestRealAccountHarnessOnTheFake(t *testing.T) {
	fake := awsfake.New("eu-west-1")
	t.Cleanup(fake.Close)
	seed := fake.Seed()
	cfg := Config{
		Region: seed.Region, VPCID: seed.VPCID, Subnets: seed.Subnets, PrivateAddresses: []string{seed.PrivateAddress},
		Endpoints:    map[string]string{"ec2": fake.URL(), "elasticloadbalancing": fake.URL()},
		MaxBackoff:   Duration{20 * time.Millisecond},
		PollInterval: Duration{5 * time.Millisecond},
		WaitTimeout:  Duration{30 * time.Second},
	}
	raw, err := json.Marshal(map[string]any{"config": cfg, "seedInstance": seed.Instance, "privateAddress": seed.PrivateAddress, "publicAddress": seed.PublicAddress, "settle": "1s"})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := parseRealFixture(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(t.Context(), fx.Config, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDTRIADTEST", "secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	r := newRealRun(t, p, fx, time.Minute)
	// Registered first, so it runs last: after the run's own cleanup.
	t.Cleanup(func() {
		ctx := context.Background()
		if left, err := p.ListInstances(ctx, nil); err != nil || len(left) != 1 || left[0].ID != seed.Instance || left[0].State != sdk.InstanceRunning {
			t.Errorf("after the run, live instances = %+v, %v; want the seed alone, running", left, err)
		}
		if left, err := p.ListDiskSnapshots(ctx, nil); err != nil || len(left) != 0 {
			t.Errorf("after the run, disk snapshots = %+v, %v; want none", left, err)
		}
		if left, err := p.ListLoadBalancers(ctx, nil); err != nil || len(left) != 0 {
			t.Errorf("after the run, load balancers = %+v, %v; want none", left, err)
		}
		for _, id := range []string{seed.PrivateAddress, seed.PublicAddress} {
			if a, err := p.GetAddress(ctx, id); err != nil || a.InstanceID != seed.Instance {
				t.Errorf("after the run, address %s = %+v, %v; want it on the seed", id, a, err)
			}
		}
		for _, req := range fake.Requests() {
			if req.Problem != "" {
				t.Errorf("%s:%s refused for its shape: %s", req.Service, req.Action, req.Problem)
			}
			if tok := req.Params.Get("ClientToken"); req.Action == "RunInstances" && tok != "" && !strings.HasSuffix(tok, "-"+r.id) {
				t.Errorf("RunInstances with ClientToken %q, not this run's", tok)
			}
			// Every create carries the run's label (as a tag key and value).
			if req.Problem == "" && slices.Contains([]string{"RunInstances", "CreateImage", "CreateSnapshot", "CreateSecurityGroup", "CreateLoadBalancer", "CreateTargetGroup"}, req.Action) {
				var key, value bool
				for _, v := range req.Params {
					key, value = key || slices.Contains(v, realRunLabel), value || slices.Contains(v, r.id)
				}
				if !key || !value {
					t.Errorf("%s without the tag %s=%s: %v", req.Action, realRunLabel, r.id, req.Params)
				}
			}
		}
	})
	runRealConformance(t, r)
}

func TestRealAccountFixtureReportsEveryProblem(t *testing.T) {
	_, err := parseRealFixture([]byte(`{"config": {"vpcId": "vpc-1", "subnets": {"eu-west-1a": "sn-1"}, "privateAddresses": ["10.0.1.10"]},
		"seed": "i-1", "seedInstance": "vm-1", "privateAddress": "10.0.1.11", "publicAddress": "203.0.113", "settle": "soon", "extra": 1}`))
	for _, want := range []string{"config.subnets.eu-west-1a:", "seed: unknown field", "extra: unknown field", "seedInstance:", "privateAddress: 10.0.1.11 is not in config.privateAddresses", "publicAddress:", "settle:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fixture error %v does not report %q", err, want)
		}
	}
	if _, err := parseRealFixture([]byte(`{}`)); err == nil || !strings.Contains(err.Error(), "config: required") {
		t.Errorf("empty fixture: %v", err)
	}
	fx, err := parseRealFixture([]byte(`{"config": {"region": "eu-west-1", "vpcId": "vpc-1", "subnets": {"eu-west-1a": "subnet-1"}, "privateAddresses": ["10.0.1.10"]},
		"seedInstance": "i-1", "privateAddress": "10.0.1.10", "publicAddress": "eipalloc-1", "settle": "90s"}`))
	if err != nil || fx.Seed != "i-1" || fx.Settle != 90*time.Second || fx.Config.DataDevice != "/dev/sdf" {
		t.Errorf("good fixture: %+v, %v", fx, err)
	}

	r := &realRun{id: "20250101-000000-abcdef"}
	for _, tc := range []struct{ in, want string }{
		{"", ""}, // invalid stays invalid
		{strings.Repeat("x", 65), strings.Repeat("x", 65)},
		{"vm-token-0", "vm-token-0-20250101-000000-abcdef"},
	} {
		if got := r.token(tc.in); got != tc.want {
			t.Errorf("token(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if long := r.token(strings.Repeat("y", 60)); len(long) > 64 || checkToken(long) != nil || long != r.token(strings.Repeat("y", 60)) {
		t.Errorf("token of a 60-character token: %q", long)
	}
	if l := r.labels(map[string]string{"conformance": "x"}); l["conformance"] != "x" || l[realRunLabel] != r.id || l[realOperationLabel] == "" {
		t.Errorf("labels = %v", l)
	}
}
