package upgrade

import (
	"time"

	"github.com/triad-k8s/triad/coordinator/controlplane"
)

// Kind is the journal's name for this operation.
const Kind = "upgrade"

// NodeUpgrade is one control-plane node's replacement, journaled as it
// goes so that a resumed or rolled-back upgrade knows what exists.
type NodeUpgrade struct {
	// Old is the node being replaced; OldMemberID its etcd member.
	Old         controlplane.Node `json:"old"`
	OldImage    string            `json:"oldImage"`
	OldMemberID uint64            `json:"oldMemberID,string"`
	// Leader: the old node's member led etcd at preflight.
	Leader bool `json:"leader,omitempty"`
	// Skipped: the node already ran the target image at preflight.
	Skipped bool `json:"skipped,omitempty"`
	// Drained: the old node's gate is closed and both load balancers
	// have stopped sending it new connections.
	Drained bool `json:"drained,omitempty"`
	// New is the replacement VM, once created; LearnerID its etcd
	// member, once added.
	New       controlplane.Node `json:"new"`
	LearnerID uint64            `json:"learnerID,string,omitempty"`
	Promoted  bool              `json:"promoted,omitempty"`
	Validated bool              `json:"validated,omitempty"`
	// Switched: the old member is being (or was) removed. From here the
	// node cannot go back to the old VM; an undo finishes the switch to
	// the new one instead.
	Switched bool `json:"switched,omitempty"`
	// OldMeta is the old Node's labels and taints, read before it is
	// retired, for the new Node to carry.
	OldMeta *controlplane.NodeMeta `json:"oldMeta,omitempty"`
	Done    bool                   `json:"done,omitempty"`
	// StartedAt is when the node's join began; Timings the parts, for
	// the report and make bench.
	StartedAt *time.Time `json:"startedAt,omitempty"`
	Timings   Timings    `json:"timings"`
}

// Timings are the seconds each part of a node's replacement took.
type Timings struct {
	Drain          float64 `json:"drainSeconds,omitempty"`
	CreateVM       float64 `json:"createVMSeconds,omitempty"`
	LearnerCatchUp float64 `json:"learnerCatchUpSeconds,omitempty"`
	APIServerReady float64 `json:"apiserverReadySeconds,omitempty"`
	Validate       float64 `json:"validateSeconds,omitempty"`
	Switch         float64 `json:"switchSeconds,omitempty"`
	// Total is the node's wall-clock time, join to switched, parts and
	// the steps between them (certificates, etcd start, controllers).
	Total float64 `json:"totalSeconds,omitempty"`
}

// State is an upgrade's journaled state.
type State struct {
	Cluster string `json:"cluster"`
	// Image is the cloud image the nodes move to; KubernetesVersion, if
	// set, the version their control-plane manifests are retagged to.
	Image             string `json:"image"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// DiskSnapshotID seeds the replacement VMs' data disks (the PKI,
	// kubeconfigs and manifests of the cluster): the migration's.
	DiskSnapshotID string `json:"diskSnapshotID"`
	// Migration is the operation that built the HA control plane: its
	// load balancers and addresses are the ones served.
	Migration  string `json:"migration"`
	PrivateIP  string `json:"privateIP"`
	PublicIP   string `json:"publicIP"`
	InternalLB string `json:"internalLB"`
	PublicLB   string `json:"publicLB"`
	// Nodes in upgrade order: followers first, the etcd leader last.
	Nodes     []NodeUpgrade `json:"nodes"`
	StartedAt *time.Time    `json:"startedAt,omitempty"`
	// CloudAdvice is what the cloud plugin advised at preflight.
	CloudAdvice controlplane.CloudAdvice `json:"cloudAdvice,omitzero"`
	// LeaderMoves are when etcd leadership was handed over: etcd drops the
	// proposals in flight at that moment (kube-apiserver answers those
	// writes with 500 "raft proposal dropped"), the one disruption a
	// node replacement cannot avoid.
	LeaderMoves []time.Time `json:"leaderMoves,omitempty"`
}

func (s *State) labels(op string) map[string]string {
	return map[string]string{controlplane.LabelCluster: s.Cluster, controlplane.LabelOperation: op}
}

// Serving are the nodes that serve now: each node's new VM once it is
// switched, its old one before.
func (s *State) Serving() []controlplane.Node {
	var out []controlplane.Node
	for _, n := range s.Nodes {
		if n.Switched {
			out = append(out, n.New)
		} else {
			out = append(out, n.Old)
		}
	}
	return out
}

func now() *time.Time {
	t := time.Now().UTC()
	return &t
}
