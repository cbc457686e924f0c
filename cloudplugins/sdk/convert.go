package sdk

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudv1 "github.com/triad-k8s/triad/proto/triad/cloud/v1"
)

// Converters between the SDK's Go types and the generated wire types. They
// are the only place the two meet.

var instanceStates = map[InstanceState]cloudv1.InstanceState{
	InstancePending: cloudv1.InstanceState_INSTANCE_STATE_PENDING, InstanceRunning: cloudv1.InstanceState_INSTANCE_STATE_RUNNING,
	InstanceStopping: cloudv1.InstanceState_INSTANCE_STATE_STOPPING, InstanceStopped: cloudv1.InstanceState_INSTANCE_STATE_STOPPED,
	InstanceTerminated: cloudv1.InstanceState_INSTANCE_STATE_TERMINATED,
}

var snapshotStates = map[DiskSnapshotState]cloudv1.DiskSnapshotState{
	DiskSnapshotPending: cloudv1.DiskSnapshotState_DISK_SNAPSHOT_STATE_PENDING, DiskSnapshotReady: cloudv1.DiskSnapshotState_DISK_SNAPSHOT_STATE_READY,
	DiskSnapshotError: cloudv1.DiskSnapshotState_DISK_SNAPSHOT_STATE_ERROR,
}

var addressKinds = map[AddressKind]cloudv1.AddressKind{
	AddressPrivate: cloudv1.AddressKind_ADDRESS_KIND_PRIVATE, AddressPublic: cloudv1.AddressKind_ADDRESS_KIND_PUBLIC,
}

var schemes = map[LoadBalancerScheme]cloudv1.LoadBalancerScheme{
	SchemeInternal: cloudv1.LoadBalancerScheme_LOAD_BALANCER_SCHEME_INTERNAL, SchemePublic: cloudv1.LoadBalancerScheme_LOAD_BALANCER_SCHEME_PUBLIC,
}

var backendHealths = map[BackendHealth]cloudv1.BackendHealth{
	BackendInitial: cloudv1.BackendHealth_BACKEND_HEALTH_INITIAL, BackendHealthy: cloudv1.BackendHealth_BACKEND_HEALTH_HEALTHY,
	BackendUnhealthy: cloudv1.BackendHealth_BACKEND_HEALTH_UNHEALTHY, BackendUnused: cloudv1.BackendHealth_BACKEND_HEALTH_UNUSED,
}

// reverse inverts an enum map.
func reverse[K comparable, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	instanceStatesBack = reverse(instanceStates)
	snapshotStatesBack = reverse(snapshotStates)
	addressKindsBack   = reverse(addressKinds)
	schemesBack        = reverse(schemes)
	backendHealthsBack = reverse(backendHealths)
)

func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromProto(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func durationToProto(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durationFromProto(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func instanceToProto(i Instance) *cloudv1.Instance {
	return &cloudv1.Instance{
		Id: i.ID, Name: i.Name, Zone: i.Zone, Image: i.Image, State: instanceStates[i.State],
		PrivateIp: i.PrivateIP, PublicIp: i.PublicIP, DiskId: i.DiskID, Labels: i.Labels, CreatedAt: timeToProto(i.CreatedAt),
	}
}

func instanceFromProto(i *cloudv1.Instance) Instance {
	return Instance{
		ID: i.GetId(), Name: i.GetName(), Zone: i.GetZone(), Image: i.GetImage(), State: instanceStatesBack[i.GetState()],
		PrivateIP: i.GetPrivateIp(), PublicIP: i.GetPublicIp(), DiskID: i.GetDiskId(), Labels: i.GetLabels(), CreatedAt: timeFromProto(i.GetCreatedAt()),
	}
}

func snapshotToProto(s DiskSnapshot) *cloudv1.DiskSnapshot {
	return &cloudv1.DiskSnapshot{
		Id: s.ID, SourceInstanceId: s.SourceInstanceID, SourceImage: s.SourceImage, State: snapshotStates[s.State],
		SizeBytes: s.SizeBytes, Labels: s.Labels, CreatedAt: timeToProto(s.CreatedAt),
	}
}

func snapshotFromProto(s *cloudv1.DiskSnapshot) DiskSnapshot {
	return DiskSnapshot{
		ID: s.GetId(), SourceInstanceID: s.GetSourceInstanceId(), SourceImage: s.GetSourceImage(), State: snapshotStatesBack[s.GetState()],
		SizeBytes: s.GetSizeBytes(), Labels: s.GetLabels(), CreatedAt: timeFromProto(s.GetCreatedAt()),
	}
}

func addressToProto(a Address) *cloudv1.Address {
	return &cloudv1.Address{Id: a.ID, Ip: a.IP, Kind: addressKinds[a.Kind], InstanceId: a.InstanceID, LoadBalancerId: a.LoadBalancerID}
}

func addressFromProto(a *cloudv1.Address) Address {
	return Address{ID: a.GetId(), IP: a.GetIp(), Kind: addressKindsBack[a.GetKind()], InstanceID: a.GetInstanceId(), LoadBalancerID: a.GetLoadBalancerId()}
}

func healthCheckToProto(h HealthCheck) *cloudv1.HealthCheck {
	return &cloudv1.HealthCheck{
		Port: uint32(h.Port), Path: h.Path, Interval: durationToProto(h.Interval), Timeout: durationToProto(h.Timeout),
		HealthyThreshold: uint32(h.HealthyThreshold), UnhealthyThreshold: uint32(h.UnhealthyThreshold),
	}
}

func healthCheckFromProto(h *cloudv1.HealthCheck) HealthCheck {
	return HealthCheck{
		Port: int(h.GetPort()), Path: h.GetPath(), Interval: durationFromProto(h.GetInterval()), Timeout: durationFromProto(h.GetTimeout()),
		HealthyThreshold: int(h.GetHealthyThreshold()), UnhealthyThreshold: int(h.GetUnhealthyThreshold()),
	}
}

func loadBalancerToProto(l LoadBalancer) *cloudv1.LoadBalancer {
	out := &cloudv1.LoadBalancer{
		Id: l.ID, Name: l.Name, Scheme: schemes[l.Scheme], AddressId: l.AddressID, Ip: l.IP,
		ListenerPort: uint32(l.ListenerPort), BackendPort: uint32(l.BackendPort), HealthCheck: healthCheckToProto(l.HealthCheck),
		TrafficEnabled: l.TrafficEnabled, Labels: l.Labels,
	}
	for _, b := range l.Backends {
		out.Backends = append(out.Backends, &cloudv1.Backend{InstanceId: b.InstanceID, Health: backendHealths[b.Health]})
	}
	for _, z := range l.Zones {
		out.Zones = append(out.Zones, &cloudv1.LoadBalancerZone{Zone: z.Zone, SubnetId: z.SubnetID, Ip: z.IP, State: z.State})
	}
	return out
}

func loadBalancerFromProto(l *cloudv1.LoadBalancer) LoadBalancer {
	out := LoadBalancer{
		ID: l.GetId(), Name: l.GetName(), Scheme: schemesBack[l.GetScheme()], AddressID: l.GetAddressId(), IP: l.GetIp(),
		ListenerPort: int(l.GetListenerPort()), BackendPort: int(l.GetBackendPort()), HealthCheck: healthCheckFromProto(l.GetHealthCheck()),
		TrafficEnabled: l.GetTrafficEnabled(), Labels: l.GetLabels(),
	}
	for _, b := range l.GetBackends() {
		out.Backends = append(out.Backends, Backend{InstanceID: b.GetInstanceId(), Health: backendHealthsBack[b.GetHealth()]})
	}
	for _, z := range l.GetZones() {
		out.Zones = append(out.Zones, LoadBalancerZone{Zone: z.GetZone(), SubnetID: z.GetSubnetId(), IP: z.GetIp(), State: z.GetState()})
	}
	return out
}

func checkToProto(c Check) *cloudv1.Check {
	return &cloudv1.Check{Name: c.Name, Ok: c.OK, Detail: c.Detail}
}

func checkFromProto(c *cloudv1.Check) Check {
	return Check{Name: c.GetName(), OK: c.GetOk(), Detail: c.GetDetail()}
}

func ports(in []int) []uint32 {
	out := make([]uint32, 0, len(in))
	for _, p := range in {
		out = append(out, uint32(p))
	}
	return out
}

func portsFromProto(in []uint32) []int {
	out := make([]int, 0, len(in))
	for _, p := range in {
		out = append(out, int(p))
	}
	return out
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}
