//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/coordinator/loadclient"
)

// TestLocalClusterCreate creates a single-node control plane in the local
// cloud from the pinned binaries (make k8s-binaries, TRIAD_K8S_BIN) and
// checks, through the VM's own triad-agent over mTLS, that real etcd and a
// real kube-apiserver are healthy and the four static pods run.
func TestLocalClusterCreate(t *testing.T) {
	k8sBin := os.Getenv("TRIAD_K8S_BIN")
	if k8sBin == "" {
		t.Skip("TRIAD_K8S_BIN is not set; 'make e2e' builds the control-plane binaries and sets it")
	}
	work := t.TempDir()
	stateDir, pkiDir := filepath.Join(work, "localcloud"), filepath.Join(work, "pki")
	t.Cleanup(func() {
		if r := triad(t, "local", "down", "--state-dir", stateDir); r.err != nil {
			t.Errorf("local down: %v %s", r.err, r.stderr)
		}
		if n := processesFor(stateDir); n != 0 {
			t.Errorf("%d processes left after local down", n)
		}
	})
	start := time.Now()
	r := triad(t, "local", "cluster", "create", "--name", "e2e", "--state-dir", stateDir, "--pki-dir", pkiDir,
		"--bin-dir", k8sBin, "--kubeconfig", filepath.Join(work, "kubeconfig"), "--cluster-config", filepath.Join(work, "cluster.yaml"), "--timeout", "4m", "-o", "json", "--kwok-nodes", "3",
		"--agent-binary", filepath.Join(binDir, "triad-agent"), "--cloud-binary", filepath.Join(binDir, "triad-cloud-local"))
	if r.err != nil {
		logs, _ := filepath.Glob(filepath.Join(stateDir, "vms/*/disks/root/var/log/pods/*/*/*.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			if len(data) > 3000 {
				data = data[len(data)-3000:]
			}
			t.Logf("%s:\n%s", l, data)
		}
		t.Fatalf("local cluster create: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	}
	t.Logf("local cluster create took %s\n%s", time.Since(start).Round(time.Second), r.stderr)
	var out struct {
		Instance   string `json:"instance"`
		PrivateIP  string `json:"privateIP"`
		PublicIP   string `json:"publicIP"`
		Kubeconfig string `json:"kubeconfig"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("output %q: %v", r.stdout, err)
	}
	mustTriad(t, "pki", "issue", "observer", "--name", "e2e", "--pki-dir", pkiDir)
	var health struct {
		Health struct {
			ApiserverReady bool `json:"apiserverReady"`
			EtcdHealthy    bool `json:"etcdHealthy"`
			StaticPods     []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"staticPods"`
			KubernetesVersion string `json:"kubernetesVersion"`
		} `json:"health"`
	}
	deadline := time.Now().Add(time.Minute)
	for {
		raw := mustTriad(t, "agent", "health", "-o", "json", "--pki-dir", pkiDir, "--endpoint", out.PrivateIP+":9443", "--cluster", "e2e", "--as", "observer/e2e")
		if err := json.Unmarshal([]byte(raw), &health); err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, p := range health.Health.StaticPods {
			if p.State == "STATIC_POD_STATE_RUNNING" {
				running++
			}
		}
		if health.Health.ApiserverReady && health.Health.EtcdHealthy && running == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent health: %s", raw)
		}
		time.Sleep(time.Second)
	}
	if health.Health.KubernetesVersion != "v1.36.3" {
		t.Errorf("kube-apiserver version %q", health.Health.KubernetesVersion)
	}

	// Through the public address, as a user: kwok nodes Ready, a
	// Deployment's pods Running on them, CRUD, and 30s of live load
	// through both addresses without a failure or a lost write.
	kc, err := os.ReadFile(out.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	public, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(public.Host, out.PublicIP) {
		t.Fatalf("admin kubeconfig points at %s, want the public address %s", public.Host, out.PublicIP)
	}
	client := kubernetes.NewForConfigOrDie(public)
	ctx := t.Context()
	eventuallyE2E(t, 2*time.Minute, "3 kwok nodes Ready", func() error {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of %d nodes Ready", ready, len(nodes.Items))
		}
		return nil
	})
	deploy := webDeployment()
	if _, err := client.AppsV1().Deployments("default").Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyE2E(t, 2*time.Minute, "3 pods Running on kwok nodes", func() error {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "kwok-node-") {
				running++
			}
		}
		if running != 3 {
			return fmt.Errorf("%d of %d pods Running", running, len(pods.Items))
		}
		return nil
	})

	cms := client.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "crud"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := cms.Get(ctx, "crud", metav1.GetOptions{}); err != nil || got.Data["v"] != "2" {
		t.Fatalf("read back after update: %v %v", got, err)
	}
	if err := cms.Delete(ctx, "crud", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	private := rest.CopyConfig(public)
	private.Host = "https://" + out.PrivateIP + ":6443"
	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	report, err := loadclient.Run(loadCtx, []loadclient.Target{{Name: "private", Config: private}, {Name: "public", Config: public}}, loadclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Failures) != 0 {
		t.Errorf("%d failed requests, first: %+v", len(report.Failures), report.Failures[0])
	}
	if len(report.Acked) < 50 || report.Reads == 0 || report.WatchEvents == 0 {
		t.Errorf("load too thin to prove anything: %d writes, %d reads, %d watch events", len(report.Acked), report.Reads, report.WatchEvents)
	}
	missing, err := loadclient.Missing(ctx, public, "", report)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("acknowledged writes missing: %v", missing)
	}
	t.Logf("load: %d acknowledged writes, %d reads, %d watch events, %d failures", len(report.Acked), report.Reads, report.WatchEvents, len(report.Failures))

	checkKubeadmNode(t, client, stateDir, out.Instance, out.PrivateIP)
}

func eventuallyE2E(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkKubeadmNode asserts that the control-plane VM is what 'kubeadm
// init' makes of a real node: its own kubelet registered a Ready Node with
// kubeadm's label and taint under NodeRestriction, renews its lease and
// mirrors the static pods; the cluster has kubeadm-config, cluster-info, a
// bootstrap token, CoreDNS and kube-proxy; the VM has its own hostname and
// machine id, its data disk is a filesystem of its own, and a stop/start
// (a reboot) keeps both disks.
func checkKubeadmNode(t *testing.T, client *kubernetes.Clientset, stateDir, instance, privateIP string) {
	ctx := t.Context()
	cloud, err := local.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := cloud.GetInstance(ctx, instance)
	if err != nil {
		t.Fatal(err)
	}
	nodeName := inst.Name
	eventuallyE2E(t, 2*time.Minute, "the control-plane Node Ready with kubeadm's label and taint", func() error {
		n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; !ok {
			return fmt.Errorf("labels %v", n.Labels)
		}
		tainted := false
		for _, taint := range n.Spec.Taints {
			tainted = tainted || (taint.Key == "node-role.kubernetes.io/control-plane" && taint.Effect == corev1.TaintEffectNoSchedule)
		}
		if !tainted {
			return fmt.Errorf("taints %v", n.Spec.Taints)
		}
		if !nodeIsReady(n) {
			return fmt.Errorf("not Ready: %v", n.Status.Conditions)
		}
		if n.Status.Addresses[0].Address != privateIP {
			return fmt.Errorf("addresses %v, want %s", n.Status.Addresses, privateIP)
		}
		return nil
	})
	lease := func() time.Time {
		l, err := client.CoordinationV1().Leases("kube-node-lease").Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != nodeName {
			t.Fatalf("node lease of %s: %+v %v", nodeName, l, err)
		}
		return l.Spec.RenewTime.Time
	}
	first := lease()
	eventuallyE2E(t, time.Minute, "the kubelet renews its own lease", func() error {
		if !lease().After(first) {
			return fmt.Errorf("lease renewed at %s, not since", first)
		}
		return nil
	})
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		p, err := client.CoreV1().Pods("kube-system").Get(ctx, c+"-"+nodeName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("mirror pod of %s: %v", c, err)
			continue
		}
		if _, ok := p.Annotations["kubernetes.io/config.mirror"]; !ok || p.Spec.NodeName != nodeName {
			t.Errorf("pod %s is not %s's mirror pod: annotations %v, node %q", p.Name, nodeName, p.Annotations, p.Spec.NodeName)
		}
	}
	for _, o := range []struct{ ns, kind, name string }{
		{"kube-system", "configmap", "kubeadm-config"}, {"kube-system", "configmap", "kubelet-config"},
		{"kube-public", "configmap", "cluster-info"}, {"kube-system", "deployment", "coredns"}, {"kube-system", "daemonset", "kube-proxy"},
	} {
		var err error
		switch o.kind {
		case "configmap":
			_, err = client.CoreV1().ConfigMaps(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		case "deployment":
			_, err = client.AppsV1().Deployments(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		case "daemonset":
			_, err = client.AppsV1().DaemonSets(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		}
		if err != nil {
			t.Errorf("%s %s/%s from kubeadm init: %v", o.kind, o.ns, o.name, err)
		}
	}
	tokens, err := client.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "type=bootstrap.kubernetes.io/token"})
	if err != nil || len(tokens.Items) == 0 {
		t.Errorf("no bootstrap token: %v", err)
	}
	eventuallyE2E(t, 2*time.Minute, "kube-proxy runs on the control-plane node", func() error {
		pods, err := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy", FieldSelector: "spec.nodeName=" + nodeName})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 || pods.Items[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("kube-proxy pods on %s: %d", nodeName, len(pods.Items))
		}
		return nil
	})

	// NodeRestriction: the kubelet's own credentials may not touch another
	// node.
	// kubelet-client-current.pem links to the rotated certificate by an
	// absolute path of the VM's.
	kubeletCert, err := cloud.VMPath(instance, "/var/lib/kubelet/pki/kubelet-client-current.pem")
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(kubeletCert); err == nil && filepath.IsAbs(target) {
		if kubeletCert, err = cloud.VMPath(instance, target); err != nil {
			t.Fatal(err)
		}
	}
	ca, _ := cloud.VMPath(instance, "/etc/kubernetes/pki/ca.crt")
	asKubelet, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + privateIP + ":6443",
		TLSClientConfig: rest.TLSClientConfig{CertFile: kubeletCert, KeyFile: kubeletCert, CAFile: ca}})
	if err != nil {
		t.Fatalf("the kubelet's credentials: %v", err)
	}
	patch := []byte(`{"metadata":{"labels":{"e2e-touched":"yes"}}}`)
	if _, err := asKubelet.CoreV1().Nodes().Patch(ctx, nodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Errorf("the kubelet may not label its own Node: %v", err)
	}
	if _, err := asKubelet.CoreV1().Nodes().Patch(ctx, "kwok-node-0", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the kubelet of %s labelled another node (NodeRestriction off?): %v", nodeName, err)
	}

	// The VM is its own host.
	inVM := func(args ...string) (string, error) {
		cmd, err := cloud.Command(instance, args...)
		if err != nil {
			return "", err
		}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	hostMachineID, _ := os.ReadFile("/etc/machine-id")
	machineID, err := inVM("cat", "/etc/machine-id")
	if err != nil || len(machineID) != 32 || machineID == strings.TrimSpace(string(hostMachineID)) || machineID != cloud.MachineID(instance) {
		t.Errorf("VM machine id %q (%v); host's %q, cloud's %q", machineID, err, strings.TrimSpace(string(hostMachineID)), cloud.MachineID(instance))
	}
	// Through the operator's commands: the same code.
	if h := strings.TrimSpace(mustTriad(t, "local", "vm", "shell", "--state-dir", stateDir, nodeName, "--", "hostname")); h != nodeName {
		t.Errorf("VM hostname %q, want %q", h, nodeName)
	}
	var listed []struct {
		ID, Name, State, MachineID string
	}
	if err := json.Unmarshal([]byte(mustTriad(t, "local", "vm", "list", "--state-dir", stateDir, "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != instance || listed[0].State != "running" || listed[0].MachineID != machineID {
		t.Errorf("triad local vm list: %+v, want %s running with machine id %s", listed, instance, machineID)
	}
	if lbs := strings.TrimSpace(mustTriad(t, "local", "lb", "list", "--state-dir", stateDir, "-o", "json")); lbs != "[]" {
		t.Errorf("triad local lb list before any migration: %s", lbs)
	}
	if out, err := inVM("sh", "-c", "touch /var/lib/etcd/.e2e && ln /var/lib/etcd/.e2e /var/lib/kubelet/.e2e; rc=$?; rm -f /var/lib/etcd/.e2e; exit $rc"); err == nil || !strings.Contains(out, "cross-device") {
		t.Errorf("a link from the data disk to the root disk: %q %v, want a cross-device error", out, err)
	}

	// A reboot keeps both disks: what the API stored (the data disk) and
	// what the VM wrote to its root disk.
	if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-reboot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := inVM("sh", "-c", "echo kept > /var/lib/triad-e2e-marker"); err != nil {
		t.Fatalf("writing to the root disk: %v %s", err, out)
	}
	if out := mustTriad(t, "local", "vm", "stop", "--state-dir", stateDir, instance); !strings.Contains(out, "now stopped") {
		t.Errorf("triad local vm stop: %q", out)
	}
	if out := mustTriad(t, "local", "vm", "start", "--state-dir", stateDir, nodeName); !strings.Contains(out, "now running") {
		t.Errorf("triad local vm start: %q", out)
	}
	eventuallyE2E(t, 3*time.Minute, "the cluster back after a reboot of its VM", func() error {
		if _, err := client.CoreV1().ConfigMaps("default").Get(ctx, "before-reboot", metav1.GetOptions{}); err != nil {
			return err
		}
		n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeIsReady(n) {
			return fmt.Errorf("node not Ready")
		}
		return nil
	})
	if m, err := inVM("cat", "/var/lib/triad-e2e-marker"); err != nil || m != "kept" {
		t.Errorf("root disk after reboot: %q %v", m, err)
	}
	if after, _ := inVM("cat", "/etc/machine-id"); after != machineID {
		t.Errorf("machine id changed across a reboot: %q -> %q", machineID, after)
	}
}
