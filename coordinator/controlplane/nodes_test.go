package controlplane

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/triad-k8s/triad/internal/testkube"
)

// The API server runs without kube-controller-manager or kubelets: a Node
// is Ready because the test says so in its status, and nothing deletes the
// pods of a deleted Node or reports a Deployment's replicas.

// registerNode creates n as its kubelet would register it and, unless
// ready is "", reports its Ready condition.
func registerNode(t *testing.T, kube kubernetes.Interface, n *corev1.Node, ready corev1.ConditionStatus) *corev1.Node {
	t.Helper()
	created, err := kube.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("registering Node %s: %v", n.Name, err)
	}
	if ready == "" {
		return created
	}
	return reportReady(t, kube, created, ready)
}

// reportReady sets Node n's Ready condition, as its kubelet does.
func reportReady(t *testing.T, kube kubernetes.Interface, n *corev1.Node, ready corev1.ConditionStatus) *corev1.Node {
	t.Helper()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	updated, err := kube.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("reporting Node %s Ready=%s: %v", n.Name, ready, err)
	}
	return updated
}

// getNode reads Node name back from the API server.
func getNode(t *testing.T, kube kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Node %s: %v", name, err)
	}
	return n
}

// noNodes deletes every Node: ControlPlaneNodes judges all of them.
func noNodes(t *testing.T, kube kubernetes.Interface) {
	t.Helper()
	if err := kube.CoreV1().Nodes().DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("deleting the Nodes of earlier cases: %v", err)
	}
}

// collectLog is a logf that keeps the lines it is given.
func collectLog(lines *[]string) func(string, ...any) {
	return func(format string, args ...any) { *lines = append(*lines, fmt.Sprintf(format, args...)) }
}

// keyed renders taints comparably: key=value:effect, sorted.
func keyed(taints []corev1.Taint) []string {
	out := []string{}
	for _, t := range taints {
		out = append(out, t.Key+"="+t.Value+":"+string(t.Effect))
	}
	slices.Sort(out)
	return out
}

// originalControlPlane is a control-plane Node as kubeadm, its kubelet,
// the cloud, the node lifecycle controller and the operator left it.
func originalControlPlane(name string) *corev1.Node {
	added := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
			"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
			corev1.LabelInstanceTypeStable: "m6i.large", corev1.LabelInstanceType: "m6i.large",
			corev1.LabelTopologyZone: "eu-west-1a", corev1.LabelTopologyRegion: "eu-west-1",
			corev1.LabelFailureDomainBetaZone: "eu-west-1a", corev1.LabelFailureDomainBetaRegion: "eu-west-1",
			LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": "",
			"example.com/pool": "control-plane",
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule},
			{Key: "example.com/dedicated", Value: "infra", Effect: corev1.TaintEffectNoExecute, TimeAdded: &added},
			{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added},
			{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
			{Key: "node.cloudprovider.kubernetes.io/shutdown", Effect: corev1.TaintEffectNoSchedule},
		}},
	}
}

func TestNodes(t *testing.T) {
	kube := testkube.Start(t).Client

	t.Run("MetaOf keeps kubeadm's and the operator's labels and taints and drops the machine's and the lifecycle controllers'", func(t *testing.T) {
		// Read back from the API server, which adds the not-ready taint
		// to every Node it registers (TaintNodesByCondition).
		n := getNode(t, kube, registerNode(t, kube, originalControlPlane("meta-of"), corev1.ConditionTrue).Name)
		got := MetaOf(n)
		wantLabels := map[string]string{LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": "", "example.com/pool": "control-plane"}
		if !maps.Equal(got.Labels, wantLabels) {
			t.Errorf("labels %v, want %v", got.Labels, wantLabels)
		}
		wantTaints := []corev1.Taint{
			{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule},
			{Key: "example.com/dedicated", Value: "infra", Effect: corev1.TaintEffectNoExecute},
		}
		if !reflect.DeepEqual(got.Taints, wantTaints) {
			t.Errorf("taints %v, want %v (without their time added)", got.Taints, wantTaints)
		}
	})

	t.Run("MetaOf of a Node without labels or taints is empty", func(t *testing.T) {
		if m := MetaOf(&corev1.Node{}); !m.empty() || m.Labels == nil {
			t.Errorf("MetaOf of a bare Node: %+v, want empty labels and no taints", m)
		}
	})

	t.Run("KubeadmControlPlane is what kubeadm's mark-control-plane puts on a Node", func(t *testing.T) {
		got := KubeadmControlPlane()
		if want := map[string]string{LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": ""}; !maps.Equal(got.Labels, want) {
			t.Errorf("labels %v, want %v", got.Labels, want)
		}
		if want := []string{LabelControlPlane + "=:NoSchedule"}; !slices.Equal(keyed(got.Taints), want) {
			t.Errorf("taints %v, want %v", keyed(got.Taints), want)
		}
	})

	t.Run("AdoptNodes adds exactly the missing labels and taints, once", func(t *testing.T) {
		meta := MetaOf(originalControlPlane("gone"))
		// A replacement as its kubelet registered it.
		fresh := registerNode(t, kube, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adopt-fresh", Labels: map[string]string{corev1.LabelHostname: "adopt-fresh"}}}, corev1.ConditionTrue)
		// A replacement that already has some: the control-plane label
		// and taint; the operator's label and taint with other values.
		partial := registerNode(t, kube, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "adopt-partial", Labels: map[string]string{corev1.LabelHostname: "adopt-partial", LabelControlPlane: "", "example.com/pool": "old", "example.com/other": "kept"}},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule},
				{Key: "example.com/dedicated", Value: "old", Effect: corev1.TaintEffectNoExecute},
				{Key: "example.com/dedicated", Value: "other-effect", Effect: corev1.TaintEffectNoSchedule},
			}},
		}, corev1.ConditionTrue)
		before := map[string]*corev1.Node{fresh.Name: fresh, partial.Name: partial}

		var lines []string
		changed, err := AdoptNodes(t.Context(), kube, meta, []string{"adopt-fresh", "adopt-partial"}, 10*time.Second, collectLog(&lines))
		if err != nil {
			t.Fatalf("AdoptNodes: %v", err)
		}
		if !slices.Equal(changed, []string{"adopt-fresh", "adopt-partial"}) {
			t.Errorf("changed %v, want both Nodes", changed)
		}
		for _, tc := range []struct {
			node   string
			labels map[string]string
			taints []string
			log    string
		}{
			{node: "adopt-fresh",
				labels: map[string]string{corev1.LabelHostname: "adopt-fresh", LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": "", "example.com/pool": "control-plane"},
				// The not-ready taint is the API server's, left alone.
				taints: []string{"example.com/dedicated=infra:NoExecute", LabelControlPlane + "=:NoSchedule", corev1.TaintNodeNotReady + "=:NoSchedule"},
				log:    "Node adopt-fresh: 3 labels and 2 taints of a control-plane node added"},
			{node: "adopt-partial",
				labels: map[string]string{corev1.LabelHostname: "adopt-partial", LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": "", "example.com/pool": "control-plane", "example.com/other": "kept"},
				// The operator's taint of the same key and another
				// effect is another taint: it stays.
				taints: []string{"example.com/dedicated=infra:NoExecute", "example.com/dedicated=other-effect:NoSchedule", LabelControlPlane + "=:NoSchedule", corev1.TaintNodeNotReady + "=:NoSchedule"},
				log:    "Node adopt-partial: 2 labels and 1 taints of a control-plane node added"},
		} {
			n := getNode(t, kube, tc.node)
			if !maps.Equal(n.Labels, tc.labels) {
				t.Errorf("Node %s labels %v, want %v", tc.node, n.Labels, tc.labels)
			}
			if got := keyed(n.Spec.Taints); !slices.Equal(got, tc.taints) {
				t.Errorf("Node %s taints %v, want %v (before: %v)", tc.node, got, tc.taints, keyed(before[tc.node].Spec.Taints))
			}
			if !slices.Contains(lines, tc.log) {
				t.Errorf("log %q does not say %q", lines, tc.log)
			}
			before[tc.node] = n
		}

		lines = nil
		changed, err = AdoptNodes(t.Context(), kube, meta, []string{"adopt-fresh", "adopt-partial"}, 10*time.Second, collectLog(&lines))
		if err != nil || changed != nil || lines != nil {
			t.Errorf("adopting again: changed %v, err %v, log %q; want nothing changed", changed, err, lines)
		}
		for name, b := range before {
			if n := getNode(t, kube, name); n.ResourceVersion != b.ResourceVersion {
				t.Errorf("adopting again wrote Node %s: resourceVersion %s, was %s", name, n.ResourceVersion, b.ResourceVersion)
			}
		}
	})

	t.Run("AdoptNodes gives a Node recorded nowhere what kubeadm gives a control-plane node", func(t *testing.T) {
		registerNode(t, kube, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adopt-kubeadm"}}, corev1.ConditionTrue)
		if _, err := AdoptNodes(t.Context(), kube, KubeadmControlPlane(), []string{"adopt-kubeadm"}, 10*time.Second, t.Logf); err != nil {
			t.Fatalf("AdoptNodes: %v", err)
		}
		n := getNode(t, kube, "adopt-kubeadm")
		if m := KubeadmControlPlane().missing(n); !m.empty() {
			t.Errorf("Node %s still lacks %+v", n.Name, m)
		}
	})

	t.Run("AdoptNodes waits for a Node its kubelet has yet to register and report Ready", func(t *testing.T) {
		registered := make(chan error, 1)
		go func() {
			time.Sleep(300 * time.Millisecond)
			n, err := kube.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adopt-late"}}, metav1.CreateOptions{})
			if err == nil {
				time.Sleep(300 * time.Millisecond)
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
				_, err = kube.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{})
			}
			registered <- err
		}()
		changed, err := AdoptNodes(t.Context(), kube, KubeadmControlPlane(), []string{"adopt-late"}, 20*time.Second, t.Logf)
		if rerr := <-registered; rerr != nil {
			t.Fatalf("registering the late Node: %v", rerr)
		}
		if err != nil || !slices.Equal(changed, []string{"adopt-late"}) {
			t.Errorf("AdoptNodes: changed %v, err %v; want adopt-late adopted once it was Ready", changed, err)
		}
	})

	t.Run("AdoptNodes times out naming a Node that never becomes Ready, and leaves it alone", func(t *testing.T) {
		ready := registerNode(t, kube, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adopt-ready"}}, corev1.ConditionTrue)
		notReady := registerNode(t, kube, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "adopt-not-ready"}}, corev1.ConditionFalse)
		changed, err := AdoptNodes(t.Context(), kube, KubeadmControlPlane(), []string{ready.Name, notReady.Name, "adopt-never-registered"}, 100*time.Millisecond, t.Logf)
		if err == nil || !strings.Contains(err.Error(), "Node adopt-not-ready registered and Ready") || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("AdoptNodes: %v; want a timeout naming adopt-not-ready", err)
		}
		if !slices.Equal(changed, []string{"adopt-ready"}) {
			t.Errorf("changed %v, want the Ready Node adopted before the wait for the other timed out", changed)
		}
		if n := getNode(t, kube, notReady.Name); n.ResourceVersion != notReady.ResourceVersion {
			t.Errorf("the Node that is not Ready was written: %v", n.Labels)
		}

		_, err = AdoptNodes(t.Context(), kube, KubeadmControlPlane(), []string{"adopt-never-registered"}, 100*time.Millisecond, t.Logf)
		if err == nil || !strings.Contains(err.Error(), "Node adopt-never-registered") {
			t.Errorf("AdoptNodes of a Node never registered: %v; want a timeout naming it", err)
		}
	})

	t.Run("RetireNode deletes the pods controllers replace, leaves the rest to the garbage collector and deletes the Node", func(t *testing.T) {
		ctx := t.Context()
		node := registerNode(t, kube, originalControlPlane("retire-me"), corev1.ConditionFalse)
		registerNode(t, kube, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "retire-keep"}}, corev1.ConditionTrue)

		labels := map[string]string{"app": "retire-test"}
		template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
		rs, err := kube.AppsV1().ReplicaSets(metav1.NamespaceDefault).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.ReplicaSetSpec{Replicas: new(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds, err := kube.AppsV1().DaemonSets(metav1.NamespaceSystem).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Owned as the API server records it: by the UID of an object
		// that exists.
		controlledBy := func(apiVersion, kind string, owner metav1.Object) []metav1.OwnerReference {
			return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: new(true)}}
		}
		pods := []*corev1.Pod{
			{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "web-on-retired", OwnerReferences: controlledBy("apps/v1", "ReplicaSet", rs)}, Spec: *template.Spec.DeepCopy()},
			{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "web-elsewhere", OwnerReferences: controlledBy("apps/v1", "ReplicaSet", rs)}, Spec: *template.Spec.DeepCopy()},
			{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "agent-on-retired", OwnerReferences: controlledBy("apps/v1", "DaemonSet", ds)}, Spec: *template.Spec.DeepCopy()},
			// As the kubelet makes a static pod's mirror: owned by its Node.
			{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "kube-apiserver-retire-me", OwnerReferences: controlledBy("v1", "Node", node),
				Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "a1b2c3", "kubernetes.io/config.source": "file"}}, Spec: *template.Spec.DeepCopy()},
			{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "bare-on-retired"}, Spec: *template.Spec.DeepCopy()},
		}
		for _, p := range pods {
			p.Spec.NodeName = "retire-me"
			if p.Name == "web-elsewhere" {
				p.Spec.NodeName = "retire-keep"
			}
			if _, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
			}
		}

		var lines []string
		deleted, err := RetireNode(ctx, kube, "retire-me", collectLog(&lines))
		if err != nil {
			t.Fatalf("RetireNode: %v", err)
		}
		if !slices.Equal(deleted, []string{"default/web-on-retired"}) {
			t.Errorf("deleted %v, want the ReplicaSet's pod on the Node only", deleted)
		}
		if _, err := kube.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, "web-on-retired", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the ReplicaSet's pod on the retired Node: %v, want it gone at once (no kubelet confirms a graceful deletion)", err)
		}
		// No garbage collector runs: what RetireNode leaves to it stays.
		for _, p := range pods[1:] {
			got, err := kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil || got.DeletionTimestamp != nil {
				t.Errorf("pod %s/%s: %v (deleting since %v), want it left alone", p.Namespace, p.Name, err, got.GetDeletionTimestamp())
			}
		}
		if _, err := kube.CoreV1().Nodes().Get(ctx, "retire-me", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Node retire-me: %v, want it deleted", err)
		}
		if log := strings.Join(lines, "\n"); !strings.Contains(log, "no controller owns go with it: default/bare-on-retired") || !strings.Contains(log, "Node retire-me deleted; 1 of its pods deleted") {
			t.Errorf("log %q does not name the bare pod and the deletion", log)
		}

		deleted, err = RetireNode(ctx, kube, "retire-me", t.Logf)
		if err != nil || deleted != nil {
			t.Errorf("retiring the Node again: deleted %v, err %v; want nothing and no error", deleted, err)
		}
	})

	t.Run("WaitCoreDNS waits for the ready replicas and Available", func(t *testing.T) {
		ctx := t.Context()
		if err := WaitCoreDNS(ctx, kube, 1, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "CoreDNS") {
			t.Errorf("WaitCoreDNS without a CoreDNS Deployment: %v, want a timeout", err)
		}
		labels := map[string]string{"k8s-app": "kube-dns"}
		d, err := kube.AppsV1().Deployments(metav1.NamespaceSystem).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: CoreDNS},
			Spec: appsv1.DeploymentSpec{Replicas: new(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "coredns", Image: "registry.k8s.io/coredns/coredns:v1.12.1"}}}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// report sets the status kube-controller-manager would.
		report := func(ready int32, available corev1.ConditionStatus) error {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: 2 - ready,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: available, Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
			updated, err := kube.AppsV1().Deployments(metav1.NamespaceSystem).UpdateStatus(ctx, d, metav1.UpdateOptions{})
			if err == nil {
				d = updated
			}
			return err
		}
		for _, tc := range []struct {
			ready     int32
			available corev1.ConditionStatus
			want      string
		}{
			{0, corev1.ConditionFalse, "0 of 2 replicas ready, available false"},
			{1, corev1.ConditionTrue, "1 of 2 replicas ready, available true"},
			{2, corev1.ConditionFalse, "2 of 2 replicas ready, available false"},
		} {
			if err := report(tc.ready, tc.available); err != nil {
				t.Fatal(err)
			}
			if err := WaitCoreDNS(ctx, kube, 2, 10*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WaitCoreDNS with %d ready and Available %s: %v; want a timeout saying %q", tc.ready, tc.available, err, tc.want)
			}
		}

		reported := make(chan error, 1)
		go func() {
			time.Sleep(700 * time.Millisecond)
			reported <- report(2, corev1.ConditionTrue)
		}()
		err = WaitCoreDNS(ctx, kube, 2, 20*time.Second)
		if rerr := <-reported; rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Errorf("WaitCoreDNS once 2 replicas are ready and Available: %v", err)
		}
		if err := WaitCoreDNS(ctx, kube, 1, 10*time.Millisecond); err != nil {
			t.Errorf("WaitCoreDNS for fewer replicas than are ready: %v", err)
		}
	})

	t.Run("ControlPlaneNodes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			// nodes are registered: a name with its Ready status, ""
			// for none reported; those in workers without the
			// control-plane label.
			nodes   map[string]corev1.ConditionStatus
			workers []string
			want    []string
			errs    []string
		}{
			{name: "accepts exactly the wanted control-plane Nodes, Ready, whatever the workers",
				nodes:   map[string]corev1.ConditionStatus{"cp-1": corev1.ConditionTrue, "cp-2": corev1.ConditionTrue, "cp-3": corev1.ConditionTrue, "worker-1": corev1.ConditionFalse},
				workers: []string{"worker-1"}, want: []string{"cp-3", "cp-1", "cp-2"}},
			{name: "names an extra control-plane Node",
				nodes: map[string]corev1.ConditionStatus{"cp-1": corev1.ConditionTrue, "cp-2": corev1.ConditionTrue, "cp-old": corev1.ConditionTrue},
				want:  []string{"cp-1", "cp-2"}, errs: []string{"control-plane Nodes [cp-1 cp-2 cp-old], want exactly [cp-1 cp-2]"}},
			{name: "names a missing control-plane Node",
				nodes: map[string]corev1.ConditionStatus{"cp-1": corev1.ConditionTrue},
				want:  []string{"cp-1", "cp-2"}, errs: []string{"control-plane Nodes [cp-1], want exactly [cp-1 cp-2]"}},
			{name: "names the control-plane Nodes not Ready, or that never said",
				nodes: map[string]corev1.ConditionStatus{"cp-1": corev1.ConditionTrue, "cp-2": corev1.ConditionFalse, "cp-3": ""},
				want:  []string{"cp-1", "cp-2", "cp-3"}, errs: []string{"control-plane Nodes not Ready: cp-2, cp-3"}},
			{name: "names both an extra and a NotReady Node",
				nodes: map[string]corev1.ConditionStatus{"cp-1": corev1.ConditionUnknown, "cp-old": corev1.ConditionTrue},
				want:  []string{"cp-1"}, errs: []string{"want exactly [cp-1]", "cp-old", "not Ready: cp-1"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				noNodes(t, kube)
				for _, name := range slices.Sorted(maps.Keys(tc.nodes)) {
					n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelControlPlane: ""}}}
					if slices.Contains(tc.workers, name) {
						n.Labels = nil
					}
					registerNode(t, kube, n, tc.nodes[name])
				}
				err := ControlPlaneNodes(t.Context(), kube, tc.want)
				if tc.errs == nil {
					if err != nil {
						t.Errorf("ControlPlaneNodes: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("ControlPlaneNodes passed, want an error saying %q", tc.errs)
				}
				for _, want := range tc.errs {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			})
		}
	})
}
