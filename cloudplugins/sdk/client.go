package sdk

import (
	"context"

	cloudv1 "github.com/triad-k8s/triad/proto/triad/cloud/v1"
)

// grpcClient is a Provider backed by a plugin over triad.cloud.v1.
type grpcClient struct {
	c cloudv1.CloudServiceClient
}

// call maps a wire error back to the SDK's sentinels.
func call[R any, T any](resp R, err error, get func(R) T) (T, error) {
	if err != nil {
		var zero T
		return zero, fromGRPC(err)
	}
	return get(resp), nil
}

func (g *grpcClient) PluginInfo(ctx context.Context) (PluginInfo, error) {
	r, err := g.c.GetPluginInfo(ctx, &cloudv1.GetPluginInfoRequest{HostApiVersions: []string{APIVersion}})
	return call(r, err, func(r *cloudv1.GetPluginInfoResponse) PluginInfo {
		return PluginInfo{Name: r.GetName(), Version: r.GetVersion(), APIVersions: r.GetApiVersions(), Zones: r.GetZones(), Images: r.GetImages(),
			RecommendedDrainDelay:             durationFromProto(r.GetRecommendedDrainDelay()),
			RecommendedAPIServerShutdownDelay: durationFromProto(r.GetRecommendedApiserverShutdownDelay())}
	})
}

// CheckControlPlane implements ControlPlaneChecker; a plugin without it
// answers ErrUnimplemented.
func (g *grpcClient) CheckControlPlane(ctx context.Context, req CheckControlPlaneRequest) ([]Check, error) {
	r, err := g.c.CheckControlPlane(ctx, &cloudv1.CheckControlPlaneRequest{
		InstanceId: req.InstanceID, Zones: req.Zones, PrivateAddressId: req.PrivateAddressID, PublicAddressId: req.PublicAddressID,
		NodePorts: ports(req.NodePorts), LoadBalancerPorts: ports(req.LoadBalancerPorts),
	})
	return call(r, err, func(r *cloudv1.CheckControlPlaneResponse) []Check { return mapSlice(r.GetChecks(), checkFromProto) })
}

func (g *grpcClient) GetInstance(ctx context.Context, id string) (Instance, error) {
	r, err := g.c.GetInstance(ctx, &cloudv1.GetInstanceRequest{InstanceId: id})
	return call(r, err, func(r *cloudv1.GetInstanceResponse) Instance { return instanceFromProto(r.GetInstance()) })
}

func (g *grpcClient) ListInstances(ctx context.Context, labels map[string]string) ([]Instance, error) {
	r, err := g.c.ListInstances(ctx, &cloudv1.ListInstancesRequest{Labels: labels})
	return call(r, err, func(r *cloudv1.ListInstancesResponse) []Instance {
		return mapSlice(r.GetInstances(), instanceFromProto)
	})
}

func (g *grpcClient) CreateInstance(ctx context.Context, req CreateInstanceRequest) (Instance, error) {
	r, err := g.c.CreateInstance(ctx, &cloudv1.CreateInstanceRequest{
		IdempotencyToken: req.IdempotencyToken, Name: req.Name, Zone: req.Zone, Image: req.Image,
		DiskSnapshotId: req.DiskSnapshotID, BootData: req.BootData, PrivateIp: req.PrivateIP, Labels: req.Labels,
	})
	return call(r, err, func(r *cloudv1.CreateInstanceResponse) Instance { return instanceFromProto(r.GetInstance()) })
}

func (g *grpcClient) StopInstance(ctx context.Context, id string) (Instance, error) {
	r, err := g.c.StopInstance(ctx, &cloudv1.StopInstanceRequest{InstanceId: id})
	return call(r, err, func(r *cloudv1.StopInstanceResponse) Instance { return instanceFromProto(r.GetInstance()) })
}

func (g *grpcClient) StartInstance(ctx context.Context, id string) (Instance, error) {
	r, err := g.c.StartInstance(ctx, &cloudv1.StartInstanceRequest{InstanceId: id})
	return call(r, err, func(r *cloudv1.StartInstanceResponse) Instance { return instanceFromProto(r.GetInstance()) })
}

func (g *grpcClient) DeleteInstance(ctx context.Context, id string) error {
	_, err := g.c.DeleteInstance(ctx, &cloudv1.DeleteInstanceRequest{InstanceId: id})
	return fromGRPC(err)
}

func (g *grpcClient) CreateDiskSnapshot(ctx context.Context, req CreateDiskSnapshotRequest) (DiskSnapshot, error) {
	r, err := g.c.CreateDiskSnapshot(ctx, &cloudv1.CreateDiskSnapshotRequest{IdempotencyToken: req.IdempotencyToken, InstanceId: req.InstanceID, Labels: req.Labels})
	return call(r, err, func(r *cloudv1.CreateDiskSnapshotResponse) DiskSnapshot { return snapshotFromProto(r.GetSnapshot()) })
}

func (g *grpcClient) GetDiskSnapshot(ctx context.Context, id string) (DiskSnapshot, error) {
	r, err := g.c.GetDiskSnapshot(ctx, &cloudv1.GetDiskSnapshotRequest{SnapshotId: id})
	return call(r, err, func(r *cloudv1.GetDiskSnapshotResponse) DiskSnapshot { return snapshotFromProto(r.GetSnapshot()) })
}

func (g *grpcClient) ListDiskSnapshots(ctx context.Context, labels map[string]string) ([]DiskSnapshot, error) {
	r, err := g.c.ListDiskSnapshots(ctx, &cloudv1.ListDiskSnapshotsRequest{Labels: labels})
	return call(r, err, func(r *cloudv1.ListDiskSnapshotsResponse) []DiskSnapshot {
		return mapSlice(r.GetSnapshots(), snapshotFromProto)
	})
}

func (g *grpcClient) DeleteDiskSnapshot(ctx context.Context, id string) error {
	_, err := g.c.DeleteDiskSnapshot(ctx, &cloudv1.DeleteDiskSnapshotRequest{SnapshotId: id})
	return fromGRPC(err)
}

func (g *grpcClient) GetAddress(ctx context.Context, id string) (Address, error) {
	r, err := g.c.GetAddress(ctx, &cloudv1.GetAddressRequest{AddressId: id})
	return call(r, err, func(r *cloudv1.GetAddressResponse) Address { return addressFromProto(r.GetAddress()) })
}

func (g *grpcClient) ListAddresses(ctx context.Context) ([]Address, error) {
	r, err := g.c.ListAddresses(ctx, &cloudv1.ListAddressesRequest{})
	return call(r, err, func(r *cloudv1.ListAddressesResponse) []Address { return mapSlice(r.GetAddresses(), addressFromProto) })
}

func (g *grpcClient) ReleaseAddress(ctx context.Context, id string) (Address, error) {
	r, err := g.c.ReleaseAddress(ctx, &cloudv1.ReleaseAddressRequest{AddressId: id})
	return call(r, err, func(r *cloudv1.ReleaseAddressResponse) Address { return addressFromProto(r.GetAddress()) })
}

func (g *grpcClient) AttachAddress(ctx context.Context, addressID, instanceID string) (Address, error) {
	r, err := g.c.AttachAddress(ctx, &cloudv1.AttachAddressRequest{AddressId: addressID, InstanceId: instanceID})
	return call(r, err, func(r *cloudv1.AttachAddressResponse) Address { return addressFromProto(r.GetAddress()) })
}

func (g *grpcClient) CreateLoadBalancer(ctx context.Context, req CreateLoadBalancerRequest) (LoadBalancer, error) {
	r, err := g.c.CreateLoadBalancer(ctx, &cloudv1.CreateLoadBalancerRequest{
		IdempotencyToken: req.IdempotencyToken, Name: req.Name, Scheme: schemes[req.Scheme], AddressId: req.AddressID,
		ListenerPort: uint32(req.ListenerPort), BackendPort: uint32(req.BackendPort), BackendInstanceIds: req.BackendInstanceIDs,
		HealthCheck: healthCheckToProto(req.HealthCheck), Labels: req.Labels,
	})
	return call(r, err, func(r *cloudv1.CreateLoadBalancerResponse) LoadBalancer {
		return loadBalancerFromProto(r.GetLoadBalancer())
	})
}

func (g *grpcClient) GetLoadBalancer(ctx context.Context, id string) (LoadBalancer, error) {
	r, err := g.c.GetLoadBalancer(ctx, &cloudv1.GetLoadBalancerRequest{LoadBalancerId: id})
	return call(r, err, func(r *cloudv1.GetLoadBalancerResponse) LoadBalancer {
		return loadBalancerFromProto(r.GetLoadBalancer())
	})
}

func (g *grpcClient) ListLoadBalancers(ctx context.Context, labels map[string]string) ([]LoadBalancer, error) {
	r, err := g.c.ListLoadBalancers(ctx, &cloudv1.ListLoadBalancersRequest{Labels: labels})
	return call(r, err, func(r *cloudv1.ListLoadBalancersResponse) []LoadBalancer {
		return mapSlice(r.GetLoadBalancers(), loadBalancerFromProto)
	})
}

func (g *grpcClient) SetLoadBalancerTraffic(ctx context.Context, id string, enabled bool) (LoadBalancer, error) {
	r, err := g.c.SetLoadBalancerTraffic(ctx, &cloudv1.SetLoadBalancerTrafficRequest{LoadBalancerId: id, Enabled: enabled})
	return call(r, err, func(r *cloudv1.SetLoadBalancerTrafficResponse) LoadBalancer {
		return loadBalancerFromProto(r.GetLoadBalancer())
	})
}

func (g *grpcClient) SetLoadBalancerBackends(ctx context.Context, id string, instanceIDs []string) (LoadBalancer, error) {
	r, err := g.c.SetLoadBalancerBackends(ctx, &cloudv1.SetLoadBalancerBackendsRequest{LoadBalancerId: id, BackendInstanceIds: instanceIDs})
	return call(r, err, func(r *cloudv1.SetLoadBalancerBackendsResponse) LoadBalancer {
		return loadBalancerFromProto(r.GetLoadBalancer())
	})
}

func (g *grpcClient) DeleteLoadBalancer(ctx context.Context, id string) error {
	_, err := g.c.DeleteLoadBalancer(ctx, &cloudv1.DeleteLoadBalancerRequest{LoadBalancerId: id})
	return fromGRPC(err)
}
