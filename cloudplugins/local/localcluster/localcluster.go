// Package localcluster creates a single-node Kubernetes control plane in a
// local-cloud VM as an operator makes one on a fresh node: the VM boots
// triad-agent, the local container runtime and the real kubelet, then the
// whole 'kubeadm init' (built from the pinned release) runs inside it and
// writes the PKI, kubeconfigs and static-pod manifests for the VM's own
// address; nothing is rewritten afterwards. The kubelet runs etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler from the
// cached binaries.
package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/atomicfile"
	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/manifests"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/pki"
)

// Options describe the cluster to create.
type Options struct {
	// Name of the cluster (and of triad's agent certificate).
	Name string
	// KubernetesVersion of the binaries in BinDir, e.g. v1.36.3.
	KubernetesVersion string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kubeadm (hack/build-k8s.sh).
	BinDir string
	// AgentBinary is triad-agent; CloudBinary is triad-cloud-local.
	AgentBinary, CloudBinary string
	// PKI is triad's CA; the cluster's agent certificate is issued there.
	PKI pki.Dir
	// Zone of the VM; local-a by default.
	Zone string
	// NodeMonitorGracePeriod and PodEvictionTimeout tune the node-lifecycle
	// controller so tests see its effect in seconds; zero keeps defaults.
	NodeMonitorGracePeriod time.Duration
	// UngracefulAPIServer leaves out --shutdown-send-retry-after=true, which
	// the cluster otherwise runs with: on SIGTERM kube-apiserver answers
	// new requests 429 + Retry-After and exits once the in-flight ones are
	// done, instead of holding open watches until --request-timeout (60 s).
	// kubeadm does not set it; without it a migration's 1.1 waits ~30 s.
	UngracefulAPIServer bool
	// Progress receives one line per step.
	Progress io.Writer
}

// Cluster is a created cluster.
type Cluster struct {
	Instance sdk.Instance
	// AdminKubeconfig points at the VM's public address;
	// PrivateKubeconfig at its private one, where kubelets connect.
	AdminKubeconfig, PrivateKubeconfig []byte
	// CAFile is the cluster CA inside the VM's disk.
	CAFile string
}

// Create creates the VM and waits until kube-apiserver is ready through the
// VM's public address.
func Create(ctx context.Context, cloud *local.Cloud, opts Options) (*Cluster, error) {
	if err := agentauth.ValidateClusterName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Zone == "" {
		opts.Zone = "local-a"
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeadm", "kubelet"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %s (run 'make k8s-binaries'): %w", b, opts.BinDir, err)
		}
	}
	image, err := writeImage(cloud, opts)
	if err != nil {
		return nil, err
	}
	step := func(format string, args ...any) { fmt.Fprintf(opts.Progress, "  "+format+"\n", args...) }
	start := time.Now()
	var kubeadmCfg string
	inst, err := cloud.CreateVM(ctx, local.VMRequest{
		Name: opts.Name + "-cp-0", Zone: opts.Zone, Image: image, Labels: map[string]string{"triad.dev/cluster": opts.Name},
		Prepare: func(inst sdk.Instance, disk string) error {
			step("VM %s: private %s, public %s", inst.ID, inst.PrivateIP, inst.PublicIP)
			kubeadmCfg = filepath.Join(filepath.Dir(filepath.Dir(disk)), "kubeadm.yaml")
			if err := os.WriteFile(kubeadmCfg, []byte(kubeadmConfig(inst, opts)), 0o600); err != nil {
				return err
			}
			return installAgentCert(disk, opts, step)
		},
	})
	if err != nil {
		return nil, err
	}
	disk := cloud.DiskDir(inst.ID)
	if err := kubeadmInit(ctx, cloud, inst, kubeadmCfg, opts, step); err != nil {
		return nil, err
	}
	caFile := filepath.Join(disk, "etc/kubernetes/pki/ca.crt")
	step("waiting for kube-apiserver /readyz through https://%s:6443", inst.PublicIP)
	if err := waitReady(ctx, "https://"+net.JoinHostPort(inst.PublicIP, "6443"), caFile); err != nil {
		return nil, fmt.Errorf("kube-apiserver of %s not ready (logs in %s/var/log/pods): %w", inst.ID, disk, err)
	}
	step("ready after %s", time.Since(start).Round(time.Second))
	if err := bindClusterAdmins(ctx, filepath.Join(disk, "etc/kubernetes/super-admin.conf")); err != nil {
		return nil, err
	}
	admin, err := os.ReadFile(filepath.Join(disk, "etc/kubernetes/admin.conf"))
	if err != nil {
		return nil, err
	}
	public := []byte(strings.ReplaceAll(string(admin), "https://"+inst.PrivateIP+":6443", "https://"+inst.PublicIP+":6443"))
	return &Cluster{Instance: inst, AdminKubeconfig: public, PrivateKubeconfig: admin, CAFile: caFile}, nil
}

// SkippedPreflightChecks are the checks of kubeadm's preflight phase that
// the local cloud's VMs fail by construction (README: the local cloud):
// no kernel module br_netfilter or kernel config to verify in a network
// namespace of a shared host, no systemd unit for the kubelet, and swap
// that the host may have.
var SkippedPreflightChecks = []string{
	"SystemVerification", "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables", "Swap", "Service-Kubelet",
}

// kubeadmInit runs the whole 'kubeadm init' inside the booted VM, as an
// operator would on a fresh node whose kubelet (restarted until kubeadm
// writes its configuration) and container runtime already run.
func kubeadmInit(ctx context.Context, cloud *local.Cloud, inst sdk.Instance, cfgPath string, opts Options, step func(string, ...any)) error {
	step("kubeadm init (inside %s)", inst.ID)
	if err := waitCRI(ctx, cloud, inst.ID); err != nil {
		return err
	}
	logPath := filepath.Join(filepath.Dir(filepath.Dir(cloud.DiskDir(inst.ID))), "kubeadm-init.log")
	if _, err := runIn(ctx, cloud, inst.ID, opts.BinDir, logPath, filepath.Join(opts.BinDir, "kubeadm"), "init", "--config", cfgPath,
		"--ignore-preflight-errors", strings.Join(SkippedPreflightChecks, ","), "--v", "1"); err != nil {
		return fmt.Errorf("kubeadm init in %s (log %s): %w", inst.ID, logPath, err)
	}
	return nil
}

// runContext runs cmd, killing it if ctx ends first.
func runContext(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// writeImage records the control-plane image: triad-agent, the container
// runtime, and the kubelet once the agent listens (so held pods are parked
// first).
// When the bin dir holds a next release (hack/build-k8s.sh's next/), a
// second image for it is written too: the images a rolling upgrade moves
// between.
func writeImage(cloud *local.Cloud, opts Options) (string, error) {
	etcdImage, err := etcdImageRef(opts)
	if err != nil {
		return "", err
	}
	binaries := map[string]string{etcdImage: filepath.Join(opts.BinDir, "etcd")}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		binaries["registry.k8s.io/"+c+":"+opts.KubernetesVersion] = filepath.Join(opts.BinDir, c)
	}
	name, err := writeImageFor(cloud, opts, opts.KubernetesVersion, binaries)
	if err != nil {
		return "", err
	}
	if err := writeWorkerImage(cloud, opts, opts.KubernetesVersion); err != nil {
		return "", err
	}
	next, err := os.ReadFile(filepath.Join(opts.BinDir, "next", "version"))
	if errors.Is(err, os.ErrNotExist) {
		return name, nil
	}
	if err != nil {
		return "", err
	}
	// The next image also holds the current release's images, as a node
	// image that pre-pulls the previous release does: a node of the new
	// image still starts the old manifests.
	nextVersion := strings.TrimSpace(string(next))
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		binaries["registry.k8s.io/"+c+":"+manifests.ImageTag(nextVersion)] = filepath.Join(opts.BinDir, "next", c)
	}
	if _, err = writeImageFor(cloud, opts, nextVersion, binaries); err != nil {
		return "", err
	}
	return name, writeWorkerImage(cloud, opts, nextVersion)
}

// ImageName is the local cloud's control-plane image for a Kubernetes
// version.
func ImageName(version string) string { return "control-plane-" + manifests.ImageTag(version) }

func writeImageFor(cloud *local.Cloud, opts Options, version string, binaries map[string]string) (string, error) {
	name := ImageName(version)
	dir := filepath.Join(cloud.StateDir(), "images")
	// Not next to the image: the cloud offers every <name>.json there.
	binariesFile := filepath.Join(dir, "binaries", name+".json")
	if err := writeJSON(binariesFile, binaries); err != nil {
		return "", err
	}
	img := local.Image{Processes: []local.ImageProcess{
		{Name: "triad-agent", Command: []string{opts.AgentBinary, "--cluster", opts.Name,
			"--listen", "{{ip}}:9443", "--gate-listen", "{{ip}}:9444",
			"--apiserver-url", "https://{{ip}}:6443", "--apiserver-ca", "/etc/kubernetes/pki/ca.crt",
			"--etcd-endpoint", "https://127.0.0.1:2379", "--etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt",
			"--etcd-cert", "/etc/kubernetes/pki/etcd/healthcheck-client.crt", "--etcd-key", "/etc/kubernetes/pki/etcd/healthcheck-client.key",
			"--etcd-data-dir", local.DataDiskMount, "--pki-dir", "/etc/kubernetes/pki",
			"--state-dir", "/var/lib/triad-agent", "--boot-data", "/" + local.BootDataPath,
			"--manifest-dir", "/etc/kubernetes/manifests", "--parked-dir", "/var/lib/triad-agent/parked",
			"--cri-endpoint", "unix://{{cri}}",
			"--tls-cert", "/etc/triad/pki/agent.crt", "--tls-key", "/etc/triad/pki/agent.key", "--tls-ca", "/etc/triad/pki/ca.crt"}},
		{Name: "cri", Command: []string{opts.CloudBinary, "cri", "--socket", "{{cri}}", "--state-dir", "/run/triad/cri", "--images", binariesFile}},
		// After the agent, which parks held static pods first.
		kubeletProcess(opts, "{{ip}}:9443"),
	}}
	return name, writeJSON(filepath.Join(dir, name+".json"), img)
}

// kubeletProcess runs the kubelet as kubeadm's systemd drop-in does:
// flags from kubeadm-flags.env, restarted (by the VM) until kubeadm has
// written its configuration; after startAfter accepts connections, if set.
func kubeletProcess(opts Options, startAfter string) local.ImageProcess {
	return local.ImageProcess{Name: "kubelet", StartAfterTCP: startAfter, Command: []string{"/bin/sh", "-c", `[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env; ` +
		`exec "$0" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS`,
		filepath.Join(opts.BinDir, "kubelet")}}
}

// WorkerImageName is the local cloud's worker image for a Kubernetes
// version: a container runtime and a kubelet waiting for 'kubeadm join'.
func WorkerImageName(version string) string { return "worker-" + manifests.ImageTag(version) }

func writeWorkerImage(cloud *local.Cloud, opts Options, version string) error {
	dir := filepath.Join(cloud.StateDir(), "images")
	binariesFile := filepath.Join(dir, "binaries", WorkerImageName(version)+".json")
	if err := writeJSON(binariesFile, map[string]string{}); err != nil {
		return err
	}
	img := local.Image{Processes: []local.ImageProcess{
		{Name: "cri", Command: []string{opts.CloudBinary, "cri", "--socket", "{{cri}}", "--state-dir", "/run/triad/cri", "--images", binariesFile}},
		kubeletProcess(opts, ""),
	}}
	return writeJSON(filepath.Join(dir, WorkerImageName(version)+".json"), img)
}

// etcdImageRef asks kubeadm which etcd image the release uses.
func etcdImageRef(opts Options) (string, error) {
	out, err := exec.Command(filepath.Join(opts.BinDir, "kubeadm"), "config", "images", "list", "--kubernetes-version", opts.KubernetesVersion).Output()
	if err != nil {
		return "", fmt.Errorf("kubeadm config images list: %w", err)
	}
	for _, line := range strings.Fields(string(out)) {
		if strings.HasPrefix(line, "registry.k8s.io/etcd:") {
			return line, nil
		}
	}
	return "", fmt.Errorf("kubeadm lists no etcd image: %s", out)
}

// installAgentCert puts triad's agent certificate for the cluster on the
// root disk, as an image's provisioning would.
func installAgentCert(disk string, opts Options, step func(string, ...any)) error {
	step("installing triad's agent certificate for cluster %s", opts.Name)
	agentCert, keyFile := opts.PKI.LeafFiles(agentauth.RoleAgent, opts.Name)
	if _, err := os.Stat(agentCert); os.IsNotExist(err) {
		if _, err := opts.PKI.Issue(pki.IssueRequest{Role: agentauth.RoleAgent, Name: opts.Name}); err != nil {
			return err
		}
	}
	for src, dst := range map[string]string{agentCert: "agent.crt", keyFile: "agent.key", opts.PKI.CAFile(): "ca.crt"} {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(disk, "etc/triad/pki", dst), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// kubeadmConfig is the cluster's kubeadm configuration.
func kubeadmConfig(inst sdk.Instance, opts Options) string {
	var apiserverArgs, kcmArgs string
	if !opts.UngracefulAPIServer {
		apiserverArgs = "  extraArgs:\n  - name: shutdown-send-retry-after\n    value: \"true\"\n"
	}
	if opts.NodeMonitorGracePeriod > 0 {
		kcmArgs = fmt.Sprintf("controllerManager:\n  extraArgs:\n  - name: node-monitor-grace-period\n    value: %s\n  - name: node-monitor-period\n    value: 1s\n", opts.NodeMonitorGracePeriod)
	}
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: %s
  criSocket: unix://%s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
clusterName: %s
apiServer:
  certSANs: [%q, %q]
%s%s---
# What the local cloud's runtime (processes, no cgroups) needs from the
# kubelet; kubeadm writes it to /var/lib/kubelet/config.yaml and the
# kubelet-config ConfigMap.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupsPerQOS: false
enforceNodeAllocatable: ["none"] # an empty list would be defaulted to [pods]
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
fileCheckFrequency: 1s
`, inst.PrivateIP, inst.Name, local.CRISocket, opts.KubernetesVersion, opts.Name, inst.PrivateIP, inst.PublicIP, apiserverArgs, kcmArgs)
}

// bindClusterAdmins does what 'kubeadm init' does after its phases: bind
// the group of admin.conf's user to cluster-admin, using super-admin.conf
// (system:masters). Without it admin.conf can do nothing.
func bindClusterAdmins(ctx context.Context, superAdmin string) error {
	data, err := os.ReadFile(superAdmin)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "kubeadm:cluster-admins"}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding kubeadm:cluster-admins to cluster-admin: %w", err)
	}
	return nil
}

// waitReady polls base/readyz, verifying the serving certificate against
// the cluster CA, until it answers 200 or ctx ends.
func waitReady(ctx context.Context, base, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}
