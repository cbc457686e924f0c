// Package sdk is the public Go API of triad cloud plugins. A plugin author
// implements Provider and calls Serve from main; triad (the host) calls Open
// to start a plugin binary and gets a Provider back. The wire contract
// (triad.cloud.v1) stays behind this package: plugin authors never import
// generated code.
//
// Every method must be safe to retry. Creates carry an idempotency token: a
// create repeated with the same token returns what the first one created.
// Delete, stop, start, release and attach succeed when the resource is
// already in the requested state. Errors that a caller acts on wrap one of
// the sentinel errors of this package (ErrNotFound, ...); they survive the
// wire.
//
// New methods arrive as optional interfaces first, so existing plugins keep
// compiling.
package sdk

import (
	"context"
	"time"
)

// APIVersion is the version of the plugin contract this SDK speaks.
const APIVersion = "v1"

// Provider is a cloud, as triad needs it.
type Provider interface {
	// PluginInfo names the plugin and what it supports.
	PluginInfo(ctx context.Context) (PluginInfo, error)

	GetInstance(ctx context.Context, id string) (Instance, error)
	ListInstances(ctx context.Context, labels map[string]string) ([]Instance, error)
	// CreateInstance creates and starts an instance whose data disk is a
	// copy of a disk snapshot.
	CreateInstance(ctx context.Context, req CreateInstanceRequest) (Instance, error)
	StopInstance(ctx context.Context, id string) (Instance, error)
	StartInstance(ctx context.Context, id string) (Instance, error)
	// DeleteInstance deletes an instance and its disk; a missing instance
	// is not an error.
	DeleteInstance(ctx context.Context, id string) error

	// CreateDiskSnapshot snapshots the disks of a stopped instance: at
	// least its data disk; a plugin may clone the whole instance (the AWS
	// plugin makes an AMI of every volume), so that what was installed on
	// the root disk after launch comes along.
	CreateDiskSnapshot(ctx context.Context, req CreateDiskSnapshotRequest) (DiskSnapshot, error)
	GetDiskSnapshot(ctx context.Context, id string) (DiskSnapshot, error)
	ListDiskSnapshots(ctx context.Context, labels map[string]string) ([]DiskSnapshot, error)
	DeleteDiskSnapshot(ctx context.Context, id string) error

	// GetAddress accepts an address id or the IP itself.
	GetAddress(ctx context.Context, id string) (Address, error)
	ListAddresses(ctx context.Context) ([]Address, error)
	// ReleaseAddress detaches a static address from the stopped instance or
	// the load balancer holding it, keeping it reserved.
	ReleaseAddress(ctx context.Context, id string) (Address, error)
	// AttachAddress attaches a released address to an instance.
	AttachAddress(ctx context.Context, addressID, instanceID string) (Address, error)

	// CreateLoadBalancer creates a load balancer on a released address with
	// traffic disabled.
	CreateLoadBalancer(ctx context.Context, req CreateLoadBalancerRequest) (LoadBalancer, error)
	GetLoadBalancer(ctx context.Context, id string) (LoadBalancer, error)
	ListLoadBalancers(ctx context.Context, labels map[string]string) ([]LoadBalancer, error)
	SetLoadBalancerTraffic(ctx context.Context, id string, enabled bool) (LoadBalancer, error)
	SetLoadBalancerBackends(ctx context.Context, id string, instanceIDs []string) (LoadBalancer, error)
	// DeleteLoadBalancer deletes a load balancer and leaves its address
	// released; a missing load balancer is not an error.
	DeleteLoadBalancer(ctx context.Context, id string) error
}

// PluginInfo describes a plugin.
type PluginInfo struct {
	Name        string
	Version     string
	APIVersions []string
	Zones       []string
	// Images the plugin can boot; empty when images are free-form.
	Images []string
	// RecommendedDrainDelay is how long a backend that left a load balancer
	// (or fails its health check) may still get connections: what triad
	// waits after the load balancer reports it unhealthy. Zero: no advice.
	RecommendedDrainDelay time.Duration
	// RecommendedAPIServerShutdownDelay is kube-apiserver's
	// --shutdown-delay-duration behind this cloud's load balancers: long
	// enough for the health check to fail and new connections to stop.
	// Zero: no advice.
	RecommendedAPIServerShutdownDelay time.Duration
}

// ControlPlaneChecker is an optional Provider method (a plugin without it
// answers ErrUnimplemented through the host): it checks, changing nothing,
// what the cloud must allow for an HA control plane built from an
// instance, so that preflight names each problem before anything stops.
type ControlPlaneChecker interface {
	CheckControlPlane(ctx context.Context, req CheckControlPlaneRequest) ([]Check, error)
}

// CheckControlPlaneRequest describes the HA control plane to be.
type CheckControlPlaneRequest struct {
	InstanceID       string
	Zones            []string
	PrivateAddressID string
	PublicAddressID  string
	// NodePorts must be open between control-plane nodes (2379, 2380, 9443).
	NodePorts []int
	// LoadBalancerPorts must be open from the load balancers to the nodes
	// (6443, 9444).
	LoadBalancerPorts []int
}

// Check is one finding of CheckControlPlane.
type Check struct {
	// Name says what was checked.
	Name string
	// OK is false when a migration would fail or leave the cluster unsafe.
	OK bool
	// Detail says what was found and, when not OK, what to change.
	Detail string
}

// InstanceState is the lifecycle state of an instance.
type InstanceState string

const (
	InstancePending    InstanceState = "pending"
	InstanceRunning    InstanceState = "running"
	InstanceStopping   InstanceState = "stopping"
	InstanceStopped    InstanceState = "stopped"
	InstanceTerminated InstanceState = "terminated"
)

// Instance is a VM.
type Instance struct {
	ID        string
	Name      string
	Zone      string
	Image     string
	State     InstanceState
	PrivateIP string
	PublicIP  string
	DiskID    string
	Labels    map[string]string
	CreatedAt time.Time
}

// CreateInstanceRequest asks for a VM booted from a disk snapshot.
type CreateInstanceRequest struct {
	IdempotencyToken string
	Name             string
	Zone             string
	// Image to boot; empty uses the image of the snapshot's source instance.
	Image          string
	DiskSnapshotID string
	// BootData is handed to triad-agent at boot (user data); at most 16 KiB.
	BootData []byte
	// PrivateIP requests a specific address; empty lets the cloud choose.
	PrivateIP string
	Labels    map[string]string
}

// MaxBootData is the largest boot data a plugin must accept.
const MaxBootData = 16 << 10

// DiskSnapshotState is the lifecycle state of a disk snapshot.
type DiskSnapshotState string

const (
	DiskSnapshotPending DiskSnapshotState = "pending"
	DiskSnapshotReady   DiskSnapshotState = "ready"
	DiskSnapshotError   DiskSnapshotState = "error"
)

// DiskSnapshot is a point-in-time copy of an instance's disks (at least its
// data disk; see CreateDiskSnapshot).
type DiskSnapshot struct {
	ID               string
	SourceInstanceID string
	SourceImage      string
	State            DiskSnapshotState
	SizeBytes        int64
	Labels           map[string]string
	CreatedAt        time.Time
}

// CreateDiskSnapshotRequest asks for a snapshot of a stopped instance's disk.
type CreateDiskSnapshotRequest struct {
	IdempotencyToken string
	InstanceID       string
	Labels           map[string]string
}

// AddressKind says on which network an address lives.
type AddressKind string

const (
	AddressPrivate AddressKind = "private"
	AddressPublic  AddressKind = "public"
)

// Address is a static IP address.
type Address struct {
	ID             string
	IP             string
	Kind           AddressKind
	InstanceID     string
	LoadBalancerID string
}

// LoadBalancerScheme says who can reach a load balancer.
type LoadBalancerScheme string

const (
	SchemeInternal LoadBalancerScheme = "internal"
	SchemePublic   LoadBalancerScheme = "public"
)

// HealthCheck probes each backend's agent gate over HTTPS.
type HealthCheck struct {
	Port               int
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
}

// WithDefaults fills unset fields with the contract's defaults.
func (h HealthCheck) WithDefaults() HealthCheck {
	if h.Interval <= 0 {
		h.Interval = 2 * time.Second
	}
	if h.Timeout <= 0 {
		h.Timeout = time.Second
	}
	if h.HealthyThreshold <= 0 {
		h.HealthyThreshold = 2
	}
	if h.UnhealthyThreshold <= 0 {
		h.UnhealthyThreshold = 2
	}
	if h.Path == "" {
		h.Path = "/gate"
	}
	return h
}

// BackendHealth is the health-check verdict on one backend.
type BackendHealth string

const (
	BackendInitial   BackendHealth = "initial"
	BackendHealthy   BackendHealth = "healthy"
	BackendUnhealthy BackendHealth = "unhealthy"
	// BackendUnused: the load balancer does not route to the backend at
	// all (no listener uses it yet, or its zone is not enabled).
	BackendUnused BackendHealth = "unused"
)

// LoadBalancerZone is one zone a load balancer is enabled in.
type LoadBalancerZone struct {
	Zone     string
	SubnetID string
	IP       string
	State    string
}

// Backend is one target of a load balancer.
type Backend struct {
	InstanceID string
	Health     BackendHealth
}

// LoadBalancer is a TCP load balancer on a static address.
type LoadBalancer struct {
	ID             string
	Name           string
	Scheme         LoadBalancerScheme
	AddressID      string
	IP             string
	ListenerPort   int
	BackendPort    int
	Backends       []Backend
	HealthCheck    HealthCheck
	TrafficEnabled bool
	Labels         map[string]string
	// Zones the load balancer is enabled in; a backend in another zone
	// gets no traffic. Empty when the cloud has no such notion.
	Zones []LoadBalancerZone
}

// CreateLoadBalancerRequest asks for a load balancer.
type CreateLoadBalancerRequest struct {
	IdempotencyToken   string
	Name               string
	Scheme             LoadBalancerScheme
	AddressID          string
	ListenerPort       int
	BackendPort        int
	BackendInstanceIDs []string
	HealthCheck        HealthCheck
	Labels             map[string]string
}
