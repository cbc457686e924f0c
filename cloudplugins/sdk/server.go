package sdk

import (
	"context"
	"fmt"

	cloudv1 "github.com/triad-k8s/triad/proto/triad/cloud/v1"
)

// grpcServer serves a Provider as triad.cloud.v1.
type grpcServer struct {
	cloudv1.UnimplementedCloudServiceServer
	p Provider
}

// one runs a call and maps its error; every method goes through it.
func one[T any](v T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, toGRPC(err)
	}
	return v, nil
}

func (s *grpcServer) GetPluginInfo(ctx context.Context, req *cloudv1.GetPluginInfoRequest) (*cloudv1.GetPluginInfoResponse, error) {
	info, err := s.p.PluginInfo(ctx)
	return one(&cloudv1.GetPluginInfoResponse{Name: info.Name, Version: info.Version, ApiVersions: info.APIVersions, Zones: info.Zones, Images: info.Images,
		RecommendedDrainDelay:             durationToProto(info.RecommendedDrainDelay),
		RecommendedApiserverShutdownDelay: durationToProto(info.RecommendedAPIServerShutdownDelay)}, err)
}

func (s *grpcServer) CheckControlPlane(ctx context.Context, req *cloudv1.CheckControlPlaneRequest) (*cloudv1.CheckControlPlaneResponse, error) {
	c, ok := s.p.(ControlPlaneChecker)
	if !ok {
		return nil, toGRPC(fmt.Errorf("%w: CheckControlPlane", ErrUnimplemented))
	}
	checks, err := c.CheckControlPlane(ctx, CheckControlPlaneRequest{
		InstanceID: req.GetInstanceId(), Zones: req.GetZones(), PrivateAddressID: req.GetPrivateAddressId(), PublicAddressID: req.GetPublicAddressId(),
		NodePorts: portsFromProto(req.GetNodePorts()), LoadBalancerPorts: portsFromProto(req.GetLoadBalancerPorts()),
	})
	return one(&cloudv1.CheckControlPlaneResponse{Checks: mapSlice(checks, checkToProto)}, err)
}

func (s *grpcServer) GetInstance(ctx context.Context, req *cloudv1.GetInstanceRequest) (*cloudv1.GetInstanceResponse, error) {
	i, err := s.p.GetInstance(ctx, req.GetInstanceId())
	return one(&cloudv1.GetInstanceResponse{Instance: instanceToProto(i)}, err)
}

func (s *grpcServer) ListInstances(ctx context.Context, req *cloudv1.ListInstancesRequest) (*cloudv1.ListInstancesResponse, error) {
	is, err := s.p.ListInstances(ctx, req.GetLabels())
	return one(&cloudv1.ListInstancesResponse{Instances: mapSlice(is, instanceToProto)}, err)
}

func (s *grpcServer) CreateInstance(ctx context.Context, req *cloudv1.CreateInstanceRequest) (*cloudv1.CreateInstanceResponse, error) {
	i, err := s.p.CreateInstance(ctx, CreateInstanceRequest{
		IdempotencyToken: req.GetIdempotencyToken(), Name: req.GetName(), Zone: req.GetZone(), Image: req.GetImage(),
		DiskSnapshotID: req.GetDiskSnapshotId(), BootData: req.GetBootData(), PrivateIP: req.GetPrivateIp(), Labels: req.GetLabels(),
	})
	return one(&cloudv1.CreateInstanceResponse{Instance: instanceToProto(i)}, err)
}

func (s *grpcServer) StopInstance(ctx context.Context, req *cloudv1.StopInstanceRequest) (*cloudv1.StopInstanceResponse, error) {
	i, err := s.p.StopInstance(ctx, req.GetInstanceId())
	return one(&cloudv1.StopInstanceResponse{Instance: instanceToProto(i)}, err)
}

func (s *grpcServer) StartInstance(ctx context.Context, req *cloudv1.StartInstanceRequest) (*cloudv1.StartInstanceResponse, error) {
	i, err := s.p.StartInstance(ctx, req.GetInstanceId())
	return one(&cloudv1.StartInstanceResponse{Instance: instanceToProto(i)}, err)
}

func (s *grpcServer) DeleteInstance(ctx context.Context, req *cloudv1.DeleteInstanceRequest) (*cloudv1.DeleteInstanceResponse, error) {
	return one(&cloudv1.DeleteInstanceResponse{}, s.p.DeleteInstance(ctx, req.GetInstanceId()))
}

func (s *grpcServer) CreateDiskSnapshot(ctx context.Context, req *cloudv1.CreateDiskSnapshotRequest) (*cloudv1.CreateDiskSnapshotResponse, error) {
	d, err := s.p.CreateDiskSnapshot(ctx, CreateDiskSnapshotRequest{IdempotencyToken: req.GetIdempotencyToken(), InstanceID: req.GetInstanceId(), Labels: req.GetLabels()})
	return one(&cloudv1.CreateDiskSnapshotResponse{Snapshot: snapshotToProto(d)}, err)
}

func (s *grpcServer) GetDiskSnapshot(ctx context.Context, req *cloudv1.GetDiskSnapshotRequest) (*cloudv1.GetDiskSnapshotResponse, error) {
	d, err := s.p.GetDiskSnapshot(ctx, req.GetSnapshotId())
	return one(&cloudv1.GetDiskSnapshotResponse{Snapshot: snapshotToProto(d)}, err)
}

func (s *grpcServer) ListDiskSnapshots(ctx context.Context, req *cloudv1.ListDiskSnapshotsRequest) (*cloudv1.ListDiskSnapshotsResponse, error) {
	ds, err := s.p.ListDiskSnapshots(ctx, req.GetLabels())
	return one(&cloudv1.ListDiskSnapshotsResponse{Snapshots: mapSlice(ds, snapshotToProto)}, err)
}

func (s *grpcServer) DeleteDiskSnapshot(ctx context.Context, req *cloudv1.DeleteDiskSnapshotRequest) (*cloudv1.DeleteDiskSnapshotResponse, error) {
	return one(&cloudv1.DeleteDiskSnapshotResponse{}, s.p.DeleteDiskSnapshot(ctx, req.GetSnapshotId()))
}

func (s *grpcServer) GetAddress(ctx context.Context, req *cloudv1.GetAddressRequest) (*cloudv1.GetAddressResponse, error) {
	a, err := s.p.GetAddress(ctx, req.GetAddressId())
	return one(&cloudv1.GetAddressResponse{Address: addressToProto(a)}, err)
}

func (s *grpcServer) ListAddresses(ctx context.Context, _ *cloudv1.ListAddressesRequest) (*cloudv1.ListAddressesResponse, error) {
	as, err := s.p.ListAddresses(ctx)
	return one(&cloudv1.ListAddressesResponse{Addresses: mapSlice(as, addressToProto)}, err)
}

func (s *grpcServer) ReleaseAddress(ctx context.Context, req *cloudv1.ReleaseAddressRequest) (*cloudv1.ReleaseAddressResponse, error) {
	a, err := s.p.ReleaseAddress(ctx, req.GetAddressId())
	return one(&cloudv1.ReleaseAddressResponse{Address: addressToProto(a)}, err)
}

func (s *grpcServer) AttachAddress(ctx context.Context, req *cloudv1.AttachAddressRequest) (*cloudv1.AttachAddressResponse, error) {
	a, err := s.p.AttachAddress(ctx, req.GetAddressId(), req.GetInstanceId())
	return one(&cloudv1.AttachAddressResponse{Address: addressToProto(a)}, err)
}

func (s *grpcServer) CreateLoadBalancer(ctx context.Context, req *cloudv1.CreateLoadBalancerRequest) (*cloudv1.CreateLoadBalancerResponse, error) {
	l, err := s.p.CreateLoadBalancer(ctx, CreateLoadBalancerRequest{
		IdempotencyToken: req.GetIdempotencyToken(), Name: req.GetName(), Scheme: schemesBack[req.GetScheme()], AddressID: req.GetAddressId(),
		ListenerPort: int(req.GetListenerPort()), BackendPort: int(req.GetBackendPort()), BackendInstanceIDs: req.GetBackendInstanceIds(),
		HealthCheck: healthCheckFromProto(req.GetHealthCheck()), Labels: req.GetLabels(),
	})
	return one(&cloudv1.CreateLoadBalancerResponse{LoadBalancer: loadBalancerToProto(l)}, err)
}

func (s *grpcServer) GetLoadBalancer(ctx context.Context, req *cloudv1.GetLoadBalancerRequest) (*cloudv1.GetLoadBalancerResponse, error) {
	l, err := s.p.GetLoadBalancer(ctx, req.GetLoadBalancerId())
	return one(&cloudv1.GetLoadBalancerResponse{LoadBalancer: loadBalancerToProto(l)}, err)
}

func (s *grpcServer) ListLoadBalancers(ctx context.Context, req *cloudv1.ListLoadBalancersRequest) (*cloudv1.ListLoadBalancersResponse, error) {
	ls, err := s.p.ListLoadBalancers(ctx, req.GetLabels())
	return one(&cloudv1.ListLoadBalancersResponse{LoadBalancers: mapSlice(ls, loadBalancerToProto)}, err)
}

func (s *grpcServer) SetLoadBalancerTraffic(ctx context.Context, req *cloudv1.SetLoadBalancerTrafficRequest) (*cloudv1.SetLoadBalancerTrafficResponse, error) {
	l, err := s.p.SetLoadBalancerTraffic(ctx, req.GetLoadBalancerId(), req.GetEnabled())
	return one(&cloudv1.SetLoadBalancerTrafficResponse{LoadBalancer: loadBalancerToProto(l)}, err)
}

func (s *grpcServer) SetLoadBalancerBackends(ctx context.Context, req *cloudv1.SetLoadBalancerBackendsRequest) (*cloudv1.SetLoadBalancerBackendsResponse, error) {
	l, err := s.p.SetLoadBalancerBackends(ctx, req.GetLoadBalancerId(), req.GetBackendInstanceIds())
	return one(&cloudv1.SetLoadBalancerBackendsResponse{LoadBalancer: loadBalancerToProto(l)}, err)
}

func (s *grpcServer) DeleteLoadBalancer(ctx context.Context, req *cloudv1.DeleteLoadBalancerRequest) (*cloudv1.DeleteLoadBalancerResponse, error) {
	return one(&cloudv1.DeleteLoadBalancerResponse{}, s.p.DeleteLoadBalancer(ctx, req.GetLoadBalancerId()))
}
