package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// preflight: checks before anything changes, and the baseline.

func (e *Env) preflight(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	info, err := controlplane.CloudRetry(ctx, "plugin info", func() (sdk.PluginInfo, error) { return e.Cloud.PluginInfo(ctx) })
	if err != nil {
		return err
	}
	if len(info.Zones) > 0 {
		for _, z := range s.Zones {
			if !slices.Contains(info.Zones, z) {
				return fmt.Errorf("zone %q is not offered by cloud %s (zones: %s)", z, info.Name, strings.Join(info.Zones, ", "))
			}
		}
	}
	inst, err := controlplane.CloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, s.Original.InstanceID) })
	if errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("instance %q not found in cloud %s: check controlPlane.instance", s.Original.InstanceID, info.Name)
	}
	if err != nil {
		return err
	}
	if inst.State != sdk.InstanceRunning {
		return fmt.Errorf("instance %s is %s; the migration starts from a running control plane", inst.ID, inst.State)
	}
	s.Original = controlplane.Node{InstanceID: inst.ID, Name: inst.Name, Zone: inst.Zone, PrivateIP: inst.PrivateIP}
	if s.Image == "" {
		s.Image = inst.Image
	}
	for _, a := range []struct {
		ref      string
		kind     sdk.AddressKind
		id, ip   *string
		field    string
		instIP   string
		clientOf string
	}{
		{e.Config.ControlPlane.PrivateAddress, sdk.AddressPrivate, &s.PrivateAddressID, &s.PrivateIP, "controlPlane.privateAddress", inst.PrivateIP, "kubelets and in-cluster clients"},
		{e.Config.ControlPlane.PublicAddress, sdk.AddressPublic, &s.PublicAddressID, &s.PublicIP, "controlPlane.publicAddress", inst.PublicIP, "external clients"},
	} {
		addr, err := controlplane.CloudRetry(ctx, "get address", func() (sdk.Address, error) { return e.Cloud.GetAddress(ctx, a.ref) })
		if errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("%s %q: no such static address in cloud %s", a.field, a.ref, info.Name)
		}
		if err != nil {
			return err
		}
		if addr.Kind != a.kind {
			return fmt.Errorf("%s %q is a %s address, want %s", a.field, a.ref, addr.Kind, a.kind)
		}
		if addr.InstanceID != inst.ID {
			holder := addr.InstanceID + addr.LoadBalancerID
			if holder == "" {
				holder = "nothing"
			}
			return fmt.Errorf("%s %s (%s) is not attached to instance %s (it is held by %s): the load balancer can only take over the address %s use today", a.field, a.ref, addr.IP, inst.ID, holder, a.clientOf)
		}
		*a.id, *a.ip = addr.ID, addr.IP
	}
	if err := e.checkCloud(ctx, op); err != nil {
		return err
	}
	s.CloudAdvice = controlplane.CloudAdvice{DrainDelay: info.RecommendedDrainDelay, APIServerShutdownDelay: info.RecommendedAPIServerShutdownDelay}

	endpoint := e.originalAgent(s)
	agentInfo, err := e.Info(ctx, endpoint)
	if err != nil {
		return fmt.Errorf("agent of %s unreachable: %w", inst.ID, err)
	}
	if agentInfo.GetCluster() != s.Cluster {
		return fmt.Errorf("agent at %s belongs to cluster %q, not %q", endpoint, agentInfo.GetCluster(), s.Cluster)
	}
	if agentInfo.GetHighestEpoch() >= op.Epoch() {
		return fmt.Errorf("%w: agent at %s has accepted epoch %d, newer than ours (%d): another coordinator is working on cluster %s", engine.ErrFenced, endpoint, agentInfo.GetHighestEpoch(), op.Epoch(), s.Cluster)
	}
	if agentInfo.GetNodeName() != "" {
		s.Original.Name = agentInfo.GetNodeName()
	}
	var health *agentv1.NodeHealth
	var EtcdStatus *agentv1.GetEtcdStatusResponse
	if err := e.CallAgentWithin(ctx, endpoint, "health", e.CallTimeout(), func(ctx context.Context, c agentv1.AgentServiceClient) error {
		h, err := c.GetHealth(ctx, &agentv1.GetHealthRequest{})
		if err != nil {
			return err
		}
		health = h.GetHealth()
		EtcdStatus, err = c.GetEtcdStatus(ctx, &agentv1.GetEtcdStatusRequest{})
		return err
	}); err != nil {
		return err
	}
	if !health.GetApiserverReady() {
		return fmt.Errorf("kube-apiserver on %s is not ready: %s", inst.ID, strings.Join(health.GetProblems(), "; "))
	}
	if n := len(EtcdStatus.GetMembers()); n != 1 {
		return fmt.Errorf("etcd has %d members; migrate starts from a single-member etcd", n)
	}
	if !EtcdStatus.GetHealthy() || len(EtcdStatus.GetAlarms()) > 0 {
		return fmt.Errorf("etcd on %s is not healthy (alarms: %v)", inst.ID, EtcdStatus.GetAlarms())
	}
	if free, need := health.GetDiskFreeBytes(), uint64(2*EtcdStatus.GetDbSizeBytes()); free < need {
		return fmt.Errorf("%d bytes free next to the etcd data dir; a restore needs at least %d (twice the database)", free, need)
	}
	b := Baseline{Revision: EtcdStatus.GetRevision(), DBSizeBytes: EtcdStatus.GetDbSizeBytes(), EtcdVersion: EtcdStatus.GetVersion(), LeaseRenew: map[string]time.Time{}}
	if b.Objects, err = e.countObjects(ctx, s.Original.Name); err != nil {
		return err
	}
	nodes, err := e.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if n.Name == s.Original.Name || !controlplane.NodeReady(&n) {
			continue // the old control-plane node goes away with its VM
		}
		b.ReadyNodes = append(b.ReadyNodes, n.Name)
		if l, err := e.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{}); err == nil && l.Spec.RenewTime != nil {
			b.LeaseRenew[n.Name] = l.Spec.RenewTime.Time
		}
	}
	if b.PodUIDs, err = e.podUIDs(ctx, s.Original.Name); err != nil {
		return err
	}
	if orig, err := e.Kube.CoreV1().Nodes().Get(ctx, s.Original.Name, metav1.GetOptions{}); err == nil {
		meta := controlplane.MetaOf(orig)
		b.OriginalNode = &meta
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading the original Node %s: %w", s.Original.Name, err)
	}
	if b.CoreDNS, err = controlplane.CoreDNSBaseline(ctx, e.Kube, s.Original.Name); err != nil {
		return err
	}
	if b.ControlPlaneEndpoint, err = controlplane.ControlPlaneEndpoint(ctx, e.Kube); err != nil {
		return err
	}
	s.Baseline = b
	if s.Baseline.Kubeconfigs, err = e.originalKubeconfigs(op, inst, agentInfo.GetKubeconfigs()); err != nil {
		return err
	}
	s.ClusterToken = "triad-" + op.Record.ID
	op.Logf("etcd revision %d, db %d bytes; %d Ready nodes; %d pods; agent %s", b.Revision, b.DBSizeBytes, len(b.ReadyNodes), len(b.PodUIDs), agentInfo.GetAgentVersion())
	return nil
}

// originalKubeconfigs checks that every kubeconfig kubeadm wrote on the
// original names an API server that is still there once the original VM
// stops, and returns where each points. s.Baseline's controlPlaneEndpoint
// must be set.
func (e *Env) originalKubeconfigs(op *engine.Op[State], inst sdk.Instance, kubeconfigs []*agentv1.Kubeconfig) (map[string][]string, error) {
	s := op.State
	p := s.kubeconfigPolicy("")
	if a := inst.PublicIP; a != "" && a != s.PublicIP {
		p.Gone[a] = fmt.Sprintf("the original VM's public address, which goes with it (the load balancer takes over %s, not it)", s.PublicIP)
	}
	check, err := controlplane.CheckKubeconfigs(kubeconfigs, p)
	if err != nil {
		endpoint := s.Baseline.ControlPlaneEndpoint
		if endpoint == "" {
			endpoint = net.JoinHostPort(s.PrivateIP, strconv.Itoa(e.Config.ControlPlane.APIServerPort))
		}
		return nil, fmt.Errorf("kubeconfigs on %s: %w\na kubeconfig must name an API server that answers once the original VM stops: point its server at %s (the control-plane endpoint, which the load balancers take over) or at a DNS name, then run the migration again", s.Original.Name, err, endpoint)
	}
	if len(kubeconfigs) == 0 {
		op.Logf("kubeconfigs: the agent of %s reported none (an older agent, or none in its kubeconfig directory): not checked", s.Original.Name)
		return nil, nil
	}
	op.Logf("kubeconfigs on %s name addresses that outlive it: %s", s.Original.Name, check)
	return check.Servers, nil
}

// countedResources are the object counts compared before and after.
var countedResources = []string{"namespaces", "configmaps", "secrets", "serviceaccounts", "services", "pods", "deployments", "nodes"}

// countObjects counts the objects of countedResources; pods bound to node
// (the original control-plane node, which goes away with its VM: its
// mirror pods, DaemonSet pods and whatever ran there) are left out.
func (e *Env) countObjects(ctx context.Context, node string) (map[string]int, error) {
	c, all := e.Kube.CoreV1(), metav1.ListOptions{}
	notOnNode := metav1.ListOptions{FieldSelector: "spec.nodeName!=" + node}
	lists := map[string]func() (runtime.Object, error){
		"namespaces":      func() (runtime.Object, error) { return c.Namespaces().List(ctx, all) },
		"configmaps":      func() (runtime.Object, error) { return c.ConfigMaps("").List(ctx, all) },
		"secrets":         func() (runtime.Object, error) { return c.Secrets("").List(ctx, all) },
		"serviceaccounts": func() (runtime.Object, error) { return c.ServiceAccounts("").List(ctx, all) },
		"services":        func() (runtime.Object, error) { return c.Services("").List(ctx, all) },
		"pods":            func() (runtime.Object, error) { return c.Pods("").List(ctx, notOnNode) },
		"deployments":     func() (runtime.Object, error) { return e.Kube.AppsV1().Deployments("").List(ctx, all) },
		"nodes":           func() (runtime.Object, error) { return c.Nodes().List(ctx, all) },
	}
	out := map[string]int{}
	for _, r := range countedResources {
		l, err := lists[r]()
		if err != nil {
			return nil, fmt.Errorf("counting %s: %w", r, err)
		}
		out[r] = meta.LenList(l)
	}
	return out, nil
}

// podUIDs maps every pod not bound to node (as countObjects) to its UID.
// The kubelet of the original node deletes the mirror pods of the static
// pods it stops, so they are not the workload's pods being replaced.
func (e *Env) podUIDs(ctx context.Context, node string) (map[string]string, error) {
	pods, err := e.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName!=" + node})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Namespace+"/"+p.Name] = string(p.UID)
	}
	return out, nil
}

// checkCloud asks the plugin what the cloud must allow for the HA control
// plane (network rules between the nodes and from the load balancers,
// volumes, exposure), when the plugin can tell; every failed check is
// named, and nothing has changed yet.
func (e *Env) checkCloud(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	checker, ok := e.Cloud.(sdk.ControlPlaneChecker)
	if !ok {
		op.Logf("cloud checks: the plugin offers none")
		return nil
	}
	req := sdk.CheckControlPlaneRequest{InstanceID: s.Original.InstanceID, Zones: s.Zones, PrivateAddressID: s.PrivateAddressID, PublicAddressID: s.PublicAddressID,
		NodePorts:         []int{2379, 2380, e.Config.Agent.Port},
		LoadBalancerPorts: []int{e.Config.ControlPlane.APIServerPort, e.Config.Agent.GatePort}}
	checks, err := controlplane.CloudRetry(ctx, "check control plane", func() ([]sdk.Check, error) { return checker.CheckControlPlane(ctx, req) })
	if errors.Is(err, sdk.ErrUnimplemented) {
		op.Logf("cloud checks: the plugin offers none")
		return nil
	}
	if err != nil {
		return fmt.Errorf("cloud checks: %w", err)
	}
	var failed []string
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the cloud is not ready for an HA control plane (%d of %d checks failed):\n  %s", len(failed), len(checks), strings.Join(failed, "\n  "))
	}
	op.Logf("cloud checks: %d passed", len(checks))
	return nil
}
