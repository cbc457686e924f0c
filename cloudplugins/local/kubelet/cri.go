package kubelet

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criServer answers the read side of the CRI RuntimeService from the
// kubelet's records; the kubelet itself starts and stops containers, so
// the write side answers Unimplemented.
type criServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	k *Kubelet
}

func (s *criServer) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "triad-local-kubelet", RuntimeVersion: "1", RuntimeApiVersion: "v1"}, nil
}

func (s *criServer) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true}, {Type: runtimeapi.NetworkReady, Status: true},
	}}}, nil
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (s *criServer) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	f := req.GetFilter()
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.k.sandboxes {
		if (f.GetId() != "" && f.GetId() != sb.Id) || (f.GetState() != nil && f.GetState().GetState() != sb.State) || !labelsMatch(sb.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, proto.Clone(sb).(*runtimeapi.PodSandbox))
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func (s *criServer) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	sb := s.k.sandboxes[req.GetPodSandboxId()]
	if sb == nil {
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q", req.GetPodSandboxId())
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
		Id: sb.Id, Metadata: sb.Metadata, State: sb.State, CreatedAt: sb.CreatedAt, Labels: sb.Labels,
		Network: &runtimeapi.PodSandboxNetworkStatus{Ip: s.k.cfg.IP},
	}}, nil
}

func (s *criServer) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	f := req.GetFilter()
	var out []*runtimeapi.Container
	for _, c := range s.k.containers {
		if (f.GetId() != "" && f.GetId() != c.cri.Id) || (f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.cri.PodSandboxId) ||
			(f.GetState() != nil && f.GetState().GetState() != c.cri.State) || !labelsMatch(c.cri.Labels, f.GetLabelSelector()) {
			continue
		}
		out = append(out, proto.Clone(c.cri).(*runtimeapi.Container))
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (s *criServer) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	c := s.k.containers[req.GetContainerId()]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "container %q", req.GetContainerId())
	}
	return &runtimeapi.ContainerStatusResponse{Status: proto.Clone(c.status).(*runtimeapi.ContainerStatus)}, nil
}

// imageServer answers the CRI ImageService from the VM's image map: the
// images of a local VM are binaries, present by definition, never pulled.
type imageServer struct {
	runtimeapi.UnimplementedImageServiceServer
	k *Kubelet
}

func (s *imageServer) image(ref string) *runtimeapi.Image {
	return &runtimeapi.Image{Id: ref, RepoTags: []string{ref}, Spec: &runtimeapi.ImageSpec{Image: ref}}
}

func (s *imageServer) ListImages(context.Context, *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	var out []*runtimeapi.Image
	for _, ref := range keys(s.k.cfg.Images) {
		out = append(out, s.image(ref))
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

func (s *imageServer) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if _, ok := s.k.cfg.Images[ref]; !ok {
		return &runtimeapi.ImageStatusResponse{}, nil // CRI: unknown image is a nil image, not an error
	}
	return &runtimeapi.ImageStatusResponse{Image: s.image(ref)}, nil
}

func (s *imageServer) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	return &runtimeapi.ImageFsInfoResponse{}, nil
}
