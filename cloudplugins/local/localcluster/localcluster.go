// Package localcluster creates a single-node Kubernetes control plane in a
// local-cloud VM, laid out exactly as kubeadm lays out a real node: the real
// kubeadm (built from the pinned release) writes the PKI, kubeconfigs and
// static-pod manifests into the VM's disk, and triad's own agent code then
// moves them to the VM's loopback address, as a migration moves a node.
// The VM runs triad-agent and the kubelet stand-in, which runs etcd,
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
	"github.com/triad-k8s/triad/agent/nodecerts"
	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/pki"
)

// placeholderAddress is what kubeadm is told the node's address is: kubeadm
// refuses a loopback advertise address, so the node is generated for this
// one and then moved to its 127.0.10.x address.
const placeholderAddress = "10.255.255.254"

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
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeadm"} {
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
	inst, err := cloud.CreateVM(ctx, local.VMRequest{
		Name: opts.Name + "-cp-0", Zone: opts.Zone, Image: image, Labels: map[string]string{"triad.dev/cluster": opts.Name},
		Prepare: func(inst sdk.Instance, disk string) error {
			step("VM %s: private %s, public %s", inst.ID, inst.PrivateIP, inst.PublicIP)
			return prepareDisk(ctx, inst, disk, opts, step)
		},
	})
	if err != nil {
		return nil, err
	}
	disk := cloud.DiskDir(inst.ID)
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

// writeImage records the control-plane image: triad-agent first, then the
// kubelet stand-in once the agent listens (so held pods are parked first).
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
	_, err = writeImageFor(cloud, opts, nextVersion, binaries)
	return name, err
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
		{Name: "triad-agent", Command: []string{opts.AgentBinary, "--cluster", opts.Name, "--node-name", "{{name}}",
			"--listen", "{{ip}}:9443", "--gate-listen", "{{ip}}:9444",
			"--apiserver-url", "https://{{ip}}:6443", "--apiserver-ca", "{{disk}}/etc/kubernetes/pki/ca.crt",
			"--etcd-endpoint", "https://{{ip}}:2379", "--etcd-ca", "{{disk}}/etc/kubernetes/pki/etcd/ca.crt",
			"--etcd-cert", "{{disk}}/etc/kubernetes/pki/etcd/healthcheck-client.crt", "--etcd-key", "{{disk}}/etc/kubernetes/pki/etcd/healthcheck-client.key",
			"--etcd-data-dir", "{{disk}}/var/lib/etcd", "--pki-dir", "{{disk}}/etc/kubernetes/pki",
			"--state-dir", "{{disk}}/var/lib/triad-agent", "--boot-data", "{{disk}}/" + local.BootDataPath,
			"--manifest-dir", "{{disk}}/etc/kubernetes/manifests", "--parked-dir", "{{disk}}/var/lib/triad-agent/parked",
			"--cri-endpoint", "unix://{{cri}}", "--probe-host", "{{ip}}",
			"--tls-cert", "{{disk}}/etc/triad/pki/agent.crt", "--tls-key", "{{disk}}/etc/triad/pki/agent.key", "--tls-ca", "{{disk}}/etc/triad/pki/ca.crt"}},
		{Name: "kubelet", StartAfterTCP: "{{ip}}:9443", Command: []string{opts.CloudBinary, "kubelet", "--root", "{{disk}}", "--ip", "{{ip}}", "--node-name", "{{name}}", "--images", binariesFile}},
	}}
	return name, writeJSON(filepath.Join(dir, name+".json"), img)
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

// prepareDisk lays out the node with kubeadm, then moves it to its VM
// address with the agent's own certificate and manifest code.
func prepareDisk(ctx context.Context, inst sdk.Instance, disk string, opts Options, step func(string, ...any)) error {
	for _, d := range []string{"etc/kubernetes", "tmp", "var/lib/etcd"} {
		if err := os.MkdirAll(filepath.Join(disk, d), 0o755); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: %s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
clusterName: %s
apiServer:
  certSANs: [%q, %q]
`, placeholderAddress, inst.Name, opts.KubernetesVersion, opts.Name, inst.PrivateIP, inst.PublicIP)
	if err := os.WriteFile(filepath.Join(disk, "tmp/kubeadm.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	for _, phase := range [][]string{{"certs", "all"}, {"kubeconfig", "all"}, {"control-plane", "all"}, {"etcd", "local"}} {
		step("kubeadm init phase %s", strings.Join(phase, " "))
		args := append(append([]string{"init", "phase"}, phase...), "--config", "/tmp/kubeadm.yaml", "--rootfs", disk)
		cmd := exec.CommandContext(ctx, filepath.Join(opts.BinDir, "kubeadm"), args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kubeadm %v: %w\n%s", args, err, out)
		}
	}
	step("moving the node from %s to %s (agent/nodecerts, agent/manifests)", placeholderAddress, inst.PrivateIP)
	if _, err := nodecerts.Reissue(nodecerts.Request{
		PKIDir: filepath.Join(disk, "etc/kubernetes/pki"), OldAddress: placeholderAddress,
		IPs: []string{inst.PrivateIP, inst.PublicIP}, BackupDir: filepath.Join(disk, "var/lib/triad-agent/backups/create/pki"),
	}); err != nil {
		return err
	}
	mdir := filepath.Join(disk, "etc/kubernetes/manifests")
	if err := rewrite(filepath.Join(mdir, "etcd.yaml"), func(p *manifests.Pod) error {
		return manifests.RewriteEtcd(p, manifests.Etcd{Name: inst.Name, AdvertiseAddress: inst.PrivateIP, InitialCluster: inst.Name + "=https://" + net.JoinHostPort(inst.PrivateIP, "2380"), InitialClusterState: "new"})
	}); err != nil {
		return err
	}
	if err := rewrite(filepath.Join(mdir, "kube-apiserver.yaml"), func(p *manifests.Pod) error {
		if err := manifests.RewriteAPIServer(p, manifests.APIServer{AdvertiseAddress: inst.PrivateIP, EtcdServers: []string{"https://127.0.0.1:2379"}}); err != nil {
			return err
		}
		// Every VM shares this machine: bind only the VM's address. A
		// loopback advertise address needs the endpoint reconciler off; only
		// the local cloud does this.
		p.SetFlag("bind-address", inst.PrivateIP)
		p.SetFlag("endpoint-reconciler-type", "none")
		if !opts.UngracefulAPIServer {
			p.SetFlag("shutdown-send-retry-after", "true")
		}
		return nil
	}); err != nil {
		return err
	}
	if opts.NodeMonitorGracePeriod > 0 {
		if err := rewrite(filepath.Join(mdir, "kube-controller-manager.yaml"), func(p *manifests.Pod) error {
			p.SetFlag("node-monitor-grace-period", opts.NodeMonitorGracePeriod.String())
			p.SetFlag("node-monitor-period", "1s")
			return nil
		}); err != nil {
			return err
		}
	}
	confs, _ := filepath.Glob(filepath.Join(disk, "etc/kubernetes/*.conf"))
	for _, f := range confs {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		data = []byte(strings.ReplaceAll(string(data), "https://"+placeholderAddress+":6443", "https://"+inst.PrivateIP+":6443"))
		if err := atomicfile.Write(f, data, 0o600); err != nil {
			return err
		}
	}
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

func rewrite(path string, f func(*manifests.Pod) error) error {
	p, err := manifests.Read(path)
	if err != nil {
		return err
	}
	if err := f(p); err != nil {
		return err
	}
	_, err = p.Write()
	return err
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
