package migrate

import (
	"strings"

	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
)

// Step names are part of the UI.
const (
	StepPreflight           = "preflight"
	StepStopControlPlane    = "1.1-stop-control-plane"
	StepSnapshotEtcd        = "1.2-snapshot-etcd"
	StepStopVM              = "1.3-stop-vm"
	StepSnapshotDisk        = "1.4-snapshot-disk"
	StepCreateHAVMs         = "2.1-create-ha-vms"
	StepCreateLoadBalancers = "2.2-create-load-balancers"
	StepRestoreEtcd         = "2.3-restore-etcd"
	StepOpenTraffic         = "3.1-open-traffic"
	StepPostflight          = "postflight"
)

// ProbeConfigMap is the object the coordinator writes through the new
// load balancer to measure the end of the write-unavailability window.
const ProbeConfigMap = "triad-migration-probe"

// Plan is the migration as a step list over e.
func Plan(e *Env) engine.Plan[State] {
	return engine.Plan[State]{Kind: Kind, Steps: []engine.Step[State]{
		{Name: StepPreflight, Summary: "check agent, etcd, apiserver, addresses, zones and disk; record the baseline",
			Touches: func(s *State) []string {
				return []string{"reads only: instance " + s.Original.InstanceID, "addresses " + s.PrivateAddressID + ", " + s.PublicAddressID, "Kubernetes API (nodes, leases, object counts)"}
			},
			Do: e.preflight},
		{Name: StepStopControlPlane, Summary: "stop kube-apiserver, kube-controller-manager and kube-scheduler on the node; etcd keeps running and its revision must be stable",
			Touches:     func(s *State) []string { return []string{"static pods of " + s.Original.InstanceID} },
			UndoSummary: "start them again",
			Do:          e.stopControlPlane, Verify: e.revisionStable, Undo: e.startOriginalPods},
		{Name: StepSnapshotEtcd, Summary: "stream an etcd snapshot to the coordinator's store, verified with its sha256",
			Touches: func(s *State) []string {
				return []string{"etcd of " + s.Original.InstanceID + " (read)", "snapshot store"}
			},
			Do: e.snapshotEtcd, UndoSummary: "keep the snapshot"},
		{Name: StepStopVM, Summary: "stop etcd and the VM; release its static private and public addresses",
			Touches: func(s *State) []string {
				return []string{"instance " + s.Original.InstanceID, "address " + s.PrivateIP, "address " + s.PublicIP}
			},
			UndoSummary: "re-attach the addresses, start the VM and every static pod, wait for kube-apiserver",
			Do:          e.stopVM, Verify: e.vmStopped, Undo: e.restartOriginal},
		{Name: StepSnapshotDisk, Summary: "snapshot the stopped VM's data disk",
			Touches:     func(s *State) []string { return []string{"new disk snapshot of " + s.Original.InstanceID} },
			UndoSummary: "delete the disk snapshot",
			Do:          e.snapshotDisk, Undo: e.deleteDiskSnapshot},
		{Name: StepCreateHAVMs, Summary: "create 3 VMs from the disk snapshot, one per zone, holding etcd and the control plane",
			Touches:     func(s *State) []string { return []string{"3 new instances in " + strings.Join(s.Zones, ", ")} },
			UndoSummary: "delete the VMs",
			Do:          e.createVMs, Verify: e.vmsHeld, Undo: e.deleteVMs},
		{Name: StepCreateLoadBalancers, Summary: "internal LB on the old private address, public LB on the old public address; traffic not admitted",
			Touches: func(s *State) []string {
				return []string{"new load balancer on " + s.PrivateIP, "new load balancer on " + s.PublicIP}
			},
			UndoSummary: "delete the load balancers (frees the addresses)",
			Do:          e.createLBs, Verify: e.lbsClosed, Undo: e.deleteLBs},
		{Name: StepRestoreEtcd, Summary: "re-issue node certificates, restore etcd with the new 3-member membership and token, start etcd, then kube-apiservers behind closed gates",
			Touches:     func(s *State) []string { return []string{"the 3 new nodes: certificates, etcd data, manifests, gates"} },
			UndoSummary: "nothing (the VMs go with create-ha-vms' undo)",
			Do:          e.restoreEtcd, Verify: e.gatesClosed},
		{Name: StepOpenTraffic, PointOfNoReturn: true,
			Summary: "POINT OF NO RETURN: open gates and admit LB traffic; wait for every kubelet's heartbeat through the new endpoint, then start kube-controller-manager and kube-scheduler",
			Touches: func(s *State) []string {
				return []string{"gates of the 3 nodes", "both load balancers", "ConfigMap kube-system/" + ProbeConfigMap}
			},
			Do: e.openTraffic, Verify: e.allPodsRunning},
		{Name: StepPostflight, Summary: "3 voting members, revision and object counts ≥ baseline, controller leaders, no node NotReady, no pod replaced; commit the restores",
			Touches: func(s *State) []string { return []string{"old etcd data kept aside on the new nodes (deleted)"} },
			Do:      e.postflight},
	}}
}

// NewState is a migration's state before preflight, from the config.
func NewState(e *Env) *State {
	cp := e.Config.ControlPlane
	return &State{Cluster: e.Config.Name, Original: controlplane.Node{InstanceID: cp.Instance}, Zones: cp.Zones,
		PrivateAddressID: cp.PrivateAddress, PublicAddressID: cp.PublicAddress, PrivateIP: cp.PrivateAddress, PublicIP: cp.PublicAddress, Image: cp.Image}
}

func (e *Env) originalAgent(s *State) string {
	if e.Config.Agent.Endpoint != "" {
		return e.Config.Agent.Endpoint
	}
	return e.AgentEndpoint(s.PrivateIP)
}
