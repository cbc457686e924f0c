package controlplane

// The control-plane Nodes after an operation: the new ones look like the
// ones kubeadm makes, and the ones whose VMs are gone go.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// LabelControlPlane is kubeadm's control-plane role label and taint key.
const LabelControlPlane = "node-role.kubernetes.io/control-plane"

// NodeMeta is what a control-plane Node carries that its kubelet did not
// set: the labels and taints kubeadm (mark-control-plane) or the operator
// put there, which a replacement Node must carry too.
type NodeMeta struct {
	Labels map[string]string `json:"labels,omitempty"`
	Taints []corev1.Taint    `json:"taints,omitempty"`
}

// KubeadmControlPlane is what kubeadm's mark-control-plane phase puts on a
// control-plane Node: the metadata of a replacement whose original is gone
// and was never recorded.
func KubeadmControlPlane() NodeMeta {
	return NodeMeta{
		Labels: map[string]string{LabelControlPlane: "", "node.kubernetes.io/exclude-from-external-load-balancers": ""},
		Taints: []corev1.Taint{{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule}},
	}
}

// ownedByTheNode are labels the kubelet or the cloud provider set on a
// Node from the machine itself; a replacement gets its own.
var ownedByTheNode = []string{
	corev1.LabelHostname, corev1.LabelOSStable, corev1.LabelArchStable, "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
	corev1.LabelInstanceTypeStable, corev1.LabelInstanceType, corev1.LabelTopologyZone, corev1.LabelTopologyRegion,
	corev1.LabelFailureDomainBetaZone, corev1.LabelFailureDomainBetaRegion,
}

// MetaOf is the metadata of Node n that a replacement must carry: every
// label but the machine's own, every taint but the ones the node lifecycle
// controllers manage (not-ready, unreachable, unschedulable, ...).
func MetaOf(n *corev1.Node) NodeMeta {
	m := NodeMeta{Labels: map[string]string{}}
	for k, v := range n.Labels {
		if !slices.Contains(ownedByTheNode, k) {
			m.Labels[k] = v
		}
	}
	for _, t := range n.Spec.Taints {
		if !strings.HasPrefix(t.Key, "node.kubernetes.io/") && !strings.HasPrefix(t.Key, "node.cloudprovider.kubernetes.io/") {
			t.TimeAdded = nil
			m.Taints = append(m.Taints, t)
		}
	}
	return m
}

// missing returns what Node n lacks of m.
func (m NodeMeta) missing(n *corev1.Node) NodeMeta {
	var out NodeMeta
	for k, v := range m.Labels {
		if have, ok := n.Labels[k]; !ok || have != v {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[k] = v
		}
	}
	for _, t := range m.Taints {
		if !slices.ContainsFunc(n.Spec.Taints, func(h corev1.Taint) bool { return h.MatchTaint(&t) && h.Value == t.Value }) {
			out.Taints = append(out.Taints, t)
		}
	}
	return out
}

func (m NodeMeta) empty() bool { return len(m.Labels) == 0 && len(m.Taints) == 0 }

// AdoptNodes waits, up to timeout, for each named Node to be registered by
// its kubelet and Ready, and gives it meta's labels and taints. It returns
// the names it changed.
func AdoptNodes(ctx context.Context, kube kubernetes.Interface, meta NodeMeta, names []string, timeout time.Duration, logf func(string, ...any)) ([]string, error) {
	var changed []string
	for _, name := range names {
		if err := Poll(ctx, timeout, time.Second, "Node "+name+" registered and Ready", func() (bool, error) {
			n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !NodeReady(n) {
				return false, errors.New("not Ready")
			}
			return true, nil
		}); err != nil {
			return changed, err
		}
		var added NodeMeta
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if added = meta.missing(n); added.empty() {
				return nil
			}
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			maps.Copy(n.Labels, added.Labels)
			for _, t := range added.Taints {
				n.Spec.Taints = append(slices.DeleteFunc(n.Spec.Taints, func(h corev1.Taint) bool { return h.MatchTaint(&t) }), t)
			}
			_, err = kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return changed, fmt.Errorf("labelling and tainting Node %s as a control-plane node: %w", name, err)
		}
		if !added.empty() {
			changed = append(changed, name)
			logf("Node %s: %d labels and %d taints of a control-plane node added", name, len(added.Labels), len(added.Taints))
		}
	}
	return changed, nil
}

// RetireNode removes the Node of a control-plane VM that is stopped or
// gone: the pods that controllers own are deleted at once (nothing on the
// node can confirm a graceful deletion, and their controllers replace them
// on the Nodes that serve), DaemonSet and mirror pods are left to the pod
// garbage collector, then the Node is deleted. It returns the pods it
// deleted; a Node already gone is not an error.
func RetireNode(ctx context.Context, kube kubernetes.Interface, name string, logf func(string, ...any)) ([]string, error) {
	if _, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	pods, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of Node %s: %w", name, err)
	}
	var deleted, lost []string
	zero := int64(0)
	for _, p := range pods.Items {
		owner := metav1.GetControllerOf(&p)
		switch {
		case p.Annotations[corev1.MirrorPodAnnotationKey] != "", owner != nil && owner.Kind == "DaemonSet":
			continue
		case owner == nil:
			lost = append(lost, p.Namespace+"/"+p.Name)
			continue
		}
		err := kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
		switch {
		case err == nil:
			deleted = append(deleted, p.Namespace+"/"+p.Name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or replaced by its controller meanwhile.
		default:
			return deleted, fmt.Errorf("deleting pod %s/%s of Node %s: %w", p.Namespace, p.Name, name, err)
		}
	}
	if len(lost) > 0 {
		logf("Node %s: pods no controller owns go with it: %s", name, strings.Join(First(lost, 10), ", "))
	}
	if err := kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return deleted, fmt.Errorf("deleting Node %s: %w", name, err)
	}
	logf("Node %s deleted; %d of its pods deleted for their controllers to replace: %s", name, len(deleted), strings.Join(First(deleted, 10), ", "))
	return deleted, nil
}

// CoreDNS names kubeadm's DNS Deployment.
const CoreDNS = "coredns"

// CoreDNSState is CoreDNS's Deployment as an operation sees it.
type CoreDNSState struct {
	Ready      int32 `json:"ready"`
	OnOriginal int   `json:"onOriginal,omitempty"`
}

// CoreDNSBaseline reads CoreDNS's ready replicas and how many of its pods
// run on node; nil when the cluster has no CoreDNS.
func CoreDNSBaseline(ctx context.Context, kube kubernetes.Interface, node string) (*CoreDNSState, error) {
	d, err := kube.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, CoreDNS, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the CoreDNS Deployment: %w", err)
	}
	st := &CoreDNSState{Ready: d.Status.ReadyReplicas}
	pods, err := kube.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector), FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("listing CoreDNS's pods: %w", err)
	}
	st.OnOriginal = len(pods.Items)
	return st, nil
}

// WaitCoreDNS waits until CoreDNS has at least want ready replicas and is
// Available.
func WaitCoreDNS(ctx context.Context, kube kubernetes.Interface, want int32, timeout time.Duration) error {
	return Poll(ctx, timeout, 500*time.Millisecond, "CoreDNS Available with its ready replicas back", func() (bool, error) {
		d, err := kube.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, CoreDNS, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		available := slices.ContainsFunc(d.Status.Conditions, func(c appsv1.DeploymentCondition) bool {
			return c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue
		})
		if d.Status.ReadyReplicas < want || !available {
			return false, fmt.Errorf("%d of %d replicas ready, available %v", d.Status.ReadyReplicas, want, available)
		}
		return true, nil
	})
}

// ControlPlaneNodes checks that the cluster's control-plane Nodes are
// exactly want, each Ready.
func ControlPlaneNodes(ctx context.Context, kube kubernetes.Interface, want []string) error {
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: LabelControlPlane})
	if err != nil {
		return err
	}
	var have, notReady []string
	for _, n := range nodes.Items {
		have = append(have, n.Name)
		if !NodeReady(&n) {
			notReady = append(notReady, n.Name)
		}
	}
	slices.Sort(have)
	want = slices.Sorted(slices.Values(want))
	var problems []string
	if !slices.Equal(have, want) {
		problems = append(problems, fmt.Sprintf("control-plane Nodes %v, want exactly %v", have, want))
	}
	if len(notReady) > 0 {
		problems = append(problems, "control-plane Nodes not Ready: "+strings.Join(notReady, ", "))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// WaitControlPlaneNodes waits, up to timeout, until ControlPlaneNodes
// holds: a kubelet that missed a status update on a loaded node (a Node
// briefly NotReady) does not fail an operation that is otherwise done.
func WaitControlPlaneNodes(ctx context.Context, kube kubernetes.Interface, want []string, timeout time.Duration) error {
	return Poll(ctx, timeout, time.Second, "exactly the serving control-plane Nodes, Ready", func() (bool, error) {
		err := ControlPlaneNodes(ctx, kube, want)
		return err == nil, err
	})
}

// NodeReady reports whether n's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// First is s cut to n elements, with a last one saying how many more.
func First(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}
