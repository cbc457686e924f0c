package migrate

import (
	"time"

	"github.com/triad-k8s/triad/coordinator/controlplane"
)

// Kind is the journal's name for this operation.
const Kind = "migrate"

// Baseline is what preflight recorded about the cluster.
type Baseline struct {
	Revision    int64  `json:"revision"`
	DBSizeBytes int64  `json:"dbSizeBytes"`
	EtcdVersion string `json:"etcdVersion"`
	// Objects counts objects per resource.
	Objects map[string]int `json:"objects"`
	// ReadyNodes are the nodes Ready at preflight (the old control-plane
	// node excluded); each must heartbeat through the new endpoint before
	// the controllers start.
	ReadyNodes []string             `json:"readyNodes"`
	LeaseRenew map[string]time.Time `json:"leaseRenew"`
	// PodUIDs maps namespace/name to uid.
	PodUIDs map[string]string `json:"podUIDs"`
	// OriginalNode is the original Node's labels and taints that the new
	// control-plane Nodes get (nil in journals from before it was kept).
	OriginalNode *controlplane.NodeMeta `json:"originalNode,omitempty"`
	// CoreDNS is kubeadm's DNS at preflight (nil: the cluster has none).
	CoreDNS *controlplane.CoreDNSState `json:"coreDNS,omitempty"`
	// Kubeconfigs maps each kubeconfig kubeadm wrote on the original
	// (admin.conf, kubelet.conf, ...) to the server URLs it names; the new
	// nodes must carry every one (empty in journals from before they were
	// recorded, or from an agent that does not report them).
	Kubeconfigs map[string][]string `json:"kubeconfigs,omitempty"`
	// ControlPlaneEndpoint is kubeadm-config's controlPlaneEndpoint at
	// preflight ("" if none): 2.3 checks the new nodes' kubeconfigs while
	// no kube-apiserver answers.
	ControlPlaneEndpoint string `json:"controlPlaneEndpoint,omitempty"`
}

// Snapshot is the etcd snapshot in the coordinator's store.
type Snapshot struct {
	ID          string `json:"id"`
	Path        string `json:"path"`
	SHA256      string `json:"sha256"`
	SizeBytes   int64  `json:"sizeBytes"`
	Revision    int64  `json:"revision"`
	EtcdVersion string `json:"etcdVersion"`
}

// Postflight is what the last step found.
type Postflight struct {
	Members          int            `json:"members"`
	Revision         int64          `json:"revision"`
	Objects          map[string]int `json:"objects"`
	ControllerLeader string         `json:"controllerManagerLeader"`
	SchedulerLeader  string         `json:"schedulerLeader"`
	NotReady         []string       `json:"notReady,omitempty"`
	PodsChanged      []string       `json:"podsChanged,omitempty"`
	// StaleLeases are the old kube-apiserver's identity leases, deleted.
	StaleLeases []string `json:"staleLeasesRemoved,omitempty"`
	// Labelled are the new Nodes given the original's labels and taints.
	Labelled []string `json:"labelled,omitempty"`
	// RetiredPods are the original Node's pods deleted for their
	// controllers to replace, before the Node itself was deleted.
	RetiredPods []string `json:"retiredPods,omitempty"`
	// CoreDNSShortSeconds is how long CoreDNS had fewer ready replicas
	// than at preflight: from the original's stop, if it ran CoreDNS
	// pods, to their replacements' readiness.
	CoreDNSShortSeconds float64 `json:"coreDNSShortSeconds,omitempty"`
}

// State is a migration's journaled state.
type State struct {
	Cluster string `json:"cluster"`
	// Original is the single control-plane node.
	Original         controlplane.Node `json:"original"`
	Image            string            `json:"image"`
	Zones            []string          `json:"zones"`
	PrivateAddressID string            `json:"privateAddressID"`
	PrivateIP        string            `json:"privateIP"`
	PublicAddressID  string            `json:"publicAddressID"`
	PublicIP         string            `json:"publicIP"`
	Baseline         Baseline          `json:"baseline"`
	// CloudAdvice is what the cloud plugin advised at preflight.
	CloudAdvice controlplane.CloudAdvice `json:"cloudAdvice,omitzero"`
	// StoppedAt is when kube-apiserver was stopped: the start of the
	// write-unavailability window.
	StoppedAt      *time.Time          `json:"stoppedAt,omitempty"`
	StableRevision int64               `json:"stableRevision"`
	Snapshot       *Snapshot           `json:"snapshot,omitempty"`
	DiskSnapshotID string              `json:"diskSnapshotID,omitempty"`
	Nodes          []controlplane.Node `json:"nodes,omitempty"`
	InternalLB     string              `json:"internalLB,omitempty"`
	PublicLB       string              `json:"publicLB,omitempty"`
	ClusterToken   string              `json:"clusterToken,omitempty"`
	// EtcdRestoredAt is when the restored members first formed a quorum at
	// the snapshot's revision. After it, 2.3 starts kube-apiservers that
	// write (leases, endpoints): a resumed 2.3 accepts a revision past the
	// snapshot's then, and only then.
	EtcdRestoredAt *time.Time `json:"etcdRestoredAt,omitempty"`
	// OpenedAt is when traffic was admitted (the point of no return);
	// FirstWriteAt when the first write through the public load balancer
	// succeeded.
	OpenedAt             *time.Time `json:"openedAt,omitempty"`
	FirstWriteAt         *time.Time `json:"firstWriteAt,omitempty"`
	ControllersStartedAt *time.Time `json:"controllersStartedAt,omitempty"`
	// HeartbeatLeaseVersions is the resourceVersion of each baseline
	// Ready node's Lease in kube-node-lease ("" if it had none), recorded
	// once after the first write through the load balancer: the node's
	// kubelet has heartbeated through the new endpoint once its Lease's
	// differs.
	HeartbeatLeaseVersions map[string]string `json:"heartbeatLeaseVersions,omitempty"`
	// HeartbeatsPassedAt is when the heartbeat gate let the controllers
	// start; HeartbeatStragglers are the nodes that had not heartbeated by
	// then, which the controllers started without as HeartbeatThreshold
	// allowed.
	HeartbeatsPassedAt  *time.Time `json:"heartbeatsPassedAt,omitempty"`
	HeartbeatStragglers []string   `json:"heartbeatStragglers,omitempty"`
	// WindowSeconds is the write-unavailability window: StoppedAt to
	// FirstWriteAt.
	WindowSeconds float64     `json:"windowSeconds,omitempty"`
	Postflight    *Postflight `json:"postflight,omitempty"`
}

func (s *State) labels(op string) map[string]string { return controlplane.Labels(s.Cluster, op) }

func now() *time.Time {
	t := time.Now().UTC()
	return &t
}
