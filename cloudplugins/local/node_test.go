package local_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criclient "k8s.io/cri-client/pkg"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/bootdata"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

const shellPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: kube-system
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: example/shell:1
    command: ["sh", "-c", "exec sleep 1000"]
`

// kubeletConfig runs the real kubelet standalone (no API server) on the
// local cloud's runtime: the static pods of /etc/kubernetes/manifests.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupsPerQOS: false
enforceNodeAllocatable: ["none"]
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://` + local.CRISocket + `
staticPodPath: /etc/kubernetes/manifests
fileCheckFrequency: 1s
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
failSwapOn: false
address: 127.0.0.1
healthzBindAddress: 127.0.0.1
`

// nodeImage writes the "node" image, the shape of a local control-plane
// VM: triad-agent; the local cloud's container runtime; the real kubelet
// (TRIAD_K8S_BIN) once the agent listens.
func nodeImage(t *testing.T, cfg local.Config) {
	t.Helper()
	k8sBin := os.Getenv("TRIAD_K8S_BIN")
	if k8sBin == "" {
		t.Skip("TRIAD_K8S_BIN is not set: 'make unit' builds the kubelet and sets it")
	}
	agentBin := filepath.Join(t.TempDir(), "triad-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "../../cmd/triad-agent").CombinedOutput(); err != nil {
		t.Fatalf("building triad-agent: %v\n%s", err, out)
	}
	images := filepath.Join(t.TempDir(), "binaries.json")
	writeJSONFile(images, map[string]string{"example/shell:1": "/bin/sh"})
	img := local.Image{Processes: []local.ImageProcess{
		{Name: "triad-agent", Command: []string{agentBin, "--cluster", "local-test", "--node-name", "{{name}}",
			"--listen", "{{ip}}:9443", "--gate-listen", "{{ip}}:9444", "--apiserver-url", "", "--etcd-endpoint", "",
			"--state-dir", "/var/lib/triad-agent", "--boot-data", "/" + local.BootDataPath,
			"--manifest-dir", "/etc/kubernetes/manifests", "--parked-dir", "/var/lib/triad-agent/parked",
			"--cri-endpoint", "unix://{{cri}}", "--pki-dir", "/etc/kubernetes/pki",
			"--tls-cert", "/etc/triad/pki/agent.crt", "--tls-key", "/etc/triad/pki/agent.key", "--tls-ca", "/etc/triad/pki/ca.crt"}},
		{Name: "cri", Command: []string{binary, "cri", "--socket", "{{cri}}", "--state-dir", "/run/triad/cri", "--images", images}},
		{Name: "kubelet", StartAfterTCP: "{{ip}}:9443", Command: []string{filepath.Join(k8sBin, "kubelet"), "--config", "/var/lib/kubelet/config.yaml"}},
	}}
	os.MkdirAll(filepath.Join(cfg.StateDir, "images"), 0o700)
	if err := writeJSONFile(filepath.Join(cfg.StateDir, "images", "node.json"), img); err != nil {
		t.Fatal(err)
	}
}

func TestAVMRunsTheAgentAndTheKubeletAndAClonedVMHoldsPods(t *testing.T) {
	cloud, cfg := newCloud(t)
	nodeImage(t, cfg)
	ctx := t.Context()

	// The seed disk: triad's agent certificate and two static pods.
	d := pki.Dir{Path: t.TempDir()}
	d.Init("", 0)
	agentCert, _ := d.Issue(pki.IssueRequest{Role: agentauth.RoleAgent, Name: "local-test"})
	coord, _ := d.Issue(pki.IssueRequest{Role: agentauth.RoleCoordinator, Name: "t"})
	seed := t.TempDir()
	os.MkdirAll(filepath.Join(seed, "etc/triad/pki"), 0o700)
	os.MkdirAll(filepath.Join(seed, "etc/kubernetes/manifests"), 0o755)
	for src, dst := range map[string]string{agentCert.CertFile: "agent.crt", agentCert.KeyFile: "agent.key", agentCert.CAFile: "ca.crt"} {
		data, _ := os.ReadFile(src)
		os.WriteFile(filepath.Join(seed, "etc/triad/pki", dst), data, 0o600)
	}
	os.MkdirAll(filepath.Join(seed, "var/lib/kubelet"), 0o755)
	os.WriteFile(filepath.Join(seed, "var/lib/kubelet/config.yaml"), []byte(kubeletConfig), 0o600)
	for _, name := range []string{"etcd", "kube-controller-manager"} {
		os.WriteFile(filepath.Join(seed, "etc/kubernetes/manifests", name+".yaml"), fmt.Appendf(nil, shellPod, name), 0o600)
	}

	vm, err := cloud.CreateVM(ctx, local.VMRequest{Name: "cp-0", Zone: "local-a", Image: "node", SeedDir: seed})
	if err != nil {
		t.Fatal(err)
	}
	files := agentauth.TLSFiles{CertFile: coord.CertFile, KeyFile: coord.KeyFile, CAFile: coord.CAFile}
	waitPods(t, vm.PrivateIP, files, map[string]agentv1.StaticPodState{
		"etcd": agentv1.StaticPodState_STATIC_POD_STATE_RUNNING, "kube-controller-manager": agentv1.StaticPodState_STATIC_POD_STATE_RUNNING,
	})

	// Clone the stopped VM with boot data that holds kube-controller-manager.
	if _, err := cloud.StopInstance(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	snap, err := cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "s", InstanceID: vm.ID})
	if err != nil {
		t.Fatal(err)
	}
	boot, _ := bootdata.Data{HoldStaticPods: []string{"kube-controller-manager"}}.Marshal()
	clone, err := cloud.CreateInstance(ctx, sdk.CreateInstanceRequest{IdempotencyToken: "c", Name: "cp-a", Zone: "local-b", DiskSnapshotID: snap.ID, BootData: boot})
	if err != nil {
		t.Fatal(err)
	}
	waitPods(t, clone.PrivateIP, files, map[string]agentv1.StaticPodState{
		"etcd": agentv1.StaticPodState_STATIC_POD_STATE_RUNNING, "kube-controller-manager": agentv1.StaticPodState_STATIC_POD_STATE_STOPPED,
	})
	// Held means never started: the clone's runtime never ran it.
	socket, err := cloud.VMPath(clone.ID, local.CRISocket)
	if err != nil {
		t.Fatal(err)
	}
	cri, err := criclient.NewRemoteRuntimeService(ctx, "unix://"+socket, 5*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := cri.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": "kube-controller-manager-cp-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Fatalf("the held pod ran %d container(s) on the clone", len(cs))
	}
}

// waitPods polls the VM's agent over mTLS until its static pods are in the
// wanted states.
func waitPods(t *testing.T, ip string, files agentauth.TLSFiles, want map[string]agentv1.StaticPodState) {
	t.Helper()
	c, err := agentclient.Dial(ip+":9443", "local-test", files)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		resp, err := c.ListStaticPods(ctx, &agentv1.ListStaticPodsRequest{})
		cancel()
		if err == nil {
			got := map[string]agentv1.StaticPodState{}
			for _, p := range resp.GetPods() {
				got[p.GetName()] = p.GetState()
			}
			match := len(got) == len(want)
			for k, v := range want {
				match = match && got[k] == v
			}
			if match {
				return
			}
			last = fmt.Errorf("pods %v", got)
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("agent at %s: static pods not %v: %v", ip, want, last)
}
