package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeService is the CRI RuntimeService of a Server.
type runtimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	s *Server
}

const (
	runtimeName    = "triad-local-cri"
	runtimeVersion = "0.1.0"
	defaultPath    = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

func (r *runtimeService) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: runtimeName, RuntimeVersion: runtimeVersion, RuntimeApiVersion: "v1"}, nil
}

func (r *runtimeService) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true}, {Type: runtimeapi.NetworkReady, Status: true},
		}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}}},
	}, nil
}

func (r *runtimeService) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS}}, nil
}

func (r *runtimeService) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.podCIDR = cidr
	r.s.saveRuntime()
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// lookup finds a record by id or unique id prefix, as crictl's truncated
// ids expect; callers hold s.mu.
func lookup[T any](m map[string]*T, id, what string) (*T, error) {
	if v, ok := m[id]; ok {
		return v, nil
	}
	var found *T
	n := 0
	if id != "" {
		for k, v := range m {
			if strings.HasPrefix(k, id) {
				found = v
				n++
			}
		}
	}
	switch {
	case n == 1:
		return found, nil
	case n > 1:
		return nil, status.Errorf(codes.InvalidArgument, "%s id prefix %q is ambiguous", what, id)
	}
	return nil, status.Errorf(codes.NotFound, "%s %q not found", what, id)
}

func (r *runtimeService) RunPodSandbox(_ context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata() == nil {
		return nil, status.Error(codes.InvalidArgument, "sandbox config has no metadata")
	}
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := &sandbox{ID: newID(), Config: cfg, RuntimeHandler: req.GetRuntimeHandler(), State: runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: time.Now().UnixNano()}
	if dir := cfg.GetLogDirectory(); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "creating the sandbox's log directory: %v", err)
		}
	}
	if !sb.hostNetwork() {
		ip, err := s.allocateIP()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "allocating a pod address: %v", err)
		}
		if err := addPodIP(ip); err != nil {
			return nil, status.Errorf(codes.Internal, "adding pod address %s to lo: %v", ip, err)
		}
		sb.IP = ip
	}
	s.sandboxes[sb.ID] = sb
	s.save("sandboxes", sb.ID, sb)
	s.cfg.Logger.Info("ran pod sandbox", "sandbox", sb.ID, "pod", cfg.GetMetadata().GetName(), "ip", sb.IP)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

// sandboxContainers are the containers of sandbox id; callers hold s.mu.
func (s *Server) sandboxContainers(id string) []*container {
	var out []*container
	for _, c := range s.containers {
		if c.SandboxID == id {
			out = append(out, c)
		}
	}
	return out
}

func (r *runtimeService) StopPodSandbox(_ context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	s := r.s
	s.mu.Lock()
	sb, err := lookup(s.sandboxes, req.GetPodSandboxId(), "pod sandbox")
	if err != nil {
		s.mu.Unlock()
		return &runtimeapi.StopPodSandboxResponse{}, nil // idempotent: nothing left to reclaim
	}
	cs := s.sandboxContainers(sb.ID)
	s.mu.Unlock()
	for _, c := range cs {
		s.stop(c, 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb.IP != "" && sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		if err := delPodIP(sb.IP); err != nil {
			s.cfg.Logger.Warn("removing a pod address", "sandbox", sb.ID, "ip", sb.IP, "err", err)
		}
	}
	sb.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	s.save("sandboxes", sb.ID, sb)
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (r *runtimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	s := r.s
	s.mu.Lock()
	sb, err := lookup(s.sandboxes, req.GetPodSandboxId(), "pod sandbox")
	s.mu.Unlock()
	if err != nil {
		return &runtimeapi.RemovePodSandboxResponse{}, nil // idempotent
	}
	if _, err := r.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.ID}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.sandboxContainers(sb.ID) {
		s.remove(c)
	}
	delete(s.sandboxes, sb.ID)
	s.forget("sandboxes", sb.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (sb *sandbox) status() *runtimeapi.PodSandboxStatus {
	cfg := sb.Config
	return &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: cfg.GetMetadata(), State: sb.State, CreatedAt: sb.CreatedAt,
		Network: &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IP},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
	}
}

func (r *runtimeService) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, err := lookup(s.sandboxes, req.GetPodSandboxId(), "pod sandbox")
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: proto.Clone(sb.status()).(*runtimeapi.PodSandboxStatus)}
	for _, c := range s.sandboxContainers(sb.ID) {
		resp.ContainersStatuses = append(resp.ContainersStatuses, proto.Clone(c.status()).(*runtimeapi.ContainerStatus))
	}
	if req.GetVerbose() {
		info, _ := json.Marshal(map[string]any{"ip": sb.IP, "hostNetwork": sb.hostNetwork(), "config": sb.Config})
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (r *runtimeService) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	out := []*runtimeapi.PodSandbox{}
	for _, sb := range s.sandboxes {
		if (f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId())) || (f.GetState() != nil && f.GetState().GetState() != sb.State) ||
			!labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, proto.Clone(&runtimeapi.PodSandbox{
			Id: sb.ID, Metadata: sb.Config.GetMetadata(), State: sb.State, CreatedAt: sb.CreatedAt,
			Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
		}).(*runtimeapi.PodSandbox))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

// placeholderPorts are the TCP ports a placeholder listens on: the
// container's ports (the kubelet's io.kubernetes.container.ports
// annotation), and CoreDNS's health and readiness ports.
func placeholderPorts(image string, annotations map[string]string) []string {
	var ports []string
	var declared []struct {
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	if raw := annotations["io.kubernetes.container.ports"]; raw != "" {
		json.Unmarshal([]byte(raw), &declared)
	}
	for _, p := range declared {
		if p.ContainerPort > 0 && (p.Protocol == "" || p.Protocol == "TCP") {
			ports = append(ports, fmt.Sprint(p.ContainerPort))
		}
	}
	repo := image
	if i := strings.IndexAny(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if strings.HasSuffix(repo, "coredns") {
		ports = append(ports, "8080", "8181")
	}
	// Newer CoreDNS manifests declare the probe ports too: listen once.
	slices.Sort(ports)
	return slices.Compact(ports)
}

func (r *runtimeService) CreateContainer(_ context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if cfg.GetMetadata().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "container config has no name")
	}
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, err := lookup(s.sandboxes, req.GetPodSandboxId(), "pod sandbox")
	if err != nil {
		return nil, err
	}
	if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sb.ID)
	}
	image := s.resolveImage(cfg.GetImage())
	c := &container{
		ID: newID(), SandboxID: sb.ID, Config: cfg, Image: image, ImageID: imageID(image),
		State: runtimeapi.ContainerState_CONTAINER_CREATED, CreatedAt: time.Now().UnixNano(), done: make(chan struct{}),
		Dir: cfg.GetWorkingDir(),
	}
	if cfg.GetLogPath() != "" {
		c.LogPath = filepath.Join(sb.Config.GetLogDirectory(), cfg.GetLogPath())
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
	args := append(append([]string{}, cfg.GetCommand()...), cfg.GetArgs()...)
	if bin, ok := s.cfg.Images[image]; ok {
		if len(cfg.GetCommand()) > 0 {
			args = args[1:] // the image's binary replaces the command's program
		}
		c.Argv = append([]string{bin}, args...)
	} else {
		if len(s.cfg.Placeholder) == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "image %q maps to no binary and there is no placeholder", image)
		}
		c.Argv = append(append([]string{}, s.cfg.Placeholder...), args...)
		c.Env = append(c.Env, "TRIAD_PLACEHOLDER_PORTS="+strings.Join(placeholderPorts(image, cfg.GetAnnotations()), ","))
	}
	hasPath := false
	for _, kv := range cfg.GetEnvs() {
		c.Env = append(c.Env, kv.GetKey()+"="+string(kv.GetValue()))
		hasPath = hasPath || kv.GetKey() == "PATH"
	}
	if !hasPath {
		c.Env = append(c.Env, defaultPath)
	}
	if sb.IP != "" {
		c.Env = append(c.Env, "POD_IP="+sb.IP)
	}
	termination := cfg.GetAnnotations()["io.kubernetes.container.terminationMessagePath"]
	for _, m := range cfg.GetMounts() {
		if filepath.Clean(m.GetHostPath()) == filepath.Clean(m.GetContainerPath()) || m.GetContainerPath() == termination {
			continue
		}
		c.Binds = append(c.Binds, m)
	}
	s.containers[c.ID] = c
	s.save("containers", c.ID, c)
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

func (r *runtimeService) StartContainer(_ context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	if err != nil {
		return nil, err
	}
	if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %s, not created", c.ID, c.State)
	}
	if err := s.start(c); err != nil {
		s.finish(c, 128, "StartError", err.Error())
		close(c.done)
		return nil, status.Errorf(codes.Unknown, "starting container %s: %v", c.ID, err)
	}
	s.cfg.Logger.Info("started container", "container", c.ID, "name", c.Config.GetMetadata().GetName(), "pid", c.Pid, "argv", c.Argv)
	return &runtimeapi.StartContainerResponse{}, nil
}

func (r *runtimeService) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	s := r.s
	s.mu.Lock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.stop(c, time.Duration(req.GetTimeout())*time.Second)
	return &runtimeapi.StopContainerResponse{}, nil
}

// remove forgets a stopped container; callers hold s.mu.
func (s *Server) remove(c *container) {
	delete(s.containers, c.ID)
	delete(s.stats, c.ID)
	s.forget("containers", c.ID)
	os.Remove(s.pipePath(c.ID, "stdout"))
	os.Remove(s.pipePath(c.ID, "stderr"))
	if c.log != nil {
		c.log.mu.Lock()
		if c.log.f != nil {
			c.log.f.Close()
			c.log.f = nil
		}
		c.log.mu.Unlock()
	}
}

func (r *runtimeService) RemoveContainer(_ context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	s := r.s
	s.mu.Lock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	s.mu.Unlock()
	if err != nil {
		return &runtimeapi.RemoveContainerResponse{}, nil // idempotent
	}
	s.stop(c, 0) // CRI: a running container is forcibly removed
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(c)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (c *container) criContainer() *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.Config.GetMetadata(),
		Image: &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Config.GetImage().GetUserSpecifiedImage()}, ImageRef: c.ImageID, ImageId: c.ImageID,
		State: c.State, CreatedAt: c.CreatedAt, Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
	}
}

func (c *container) status() *runtimeapi.ContainerStatus {
	return &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: c.Config.GetMetadata(), State: c.State,
		CreatedAt: c.CreatedAt, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt, ExitCode: c.ExitCode,
		Image:    &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Config.GetImage().GetUserSpecifiedImage()},
		ImageRef: c.ImageID, ImageId: c.ImageID,
		Reason: c.Reason, Message: c.Message,
		Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		Mounts: c.Config.GetMounts(), LogPath: c.LogPath,
	}
}

func (r *runtimeService) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	out := []*runtimeapi.Container{}
	for _, c := range s.containers {
		if (f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId())) || (f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId())) ||
			(f.GetState() != nil && f.GetState().GetState() != c.State) || !labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, proto.Clone(c.criContainer()).(*runtimeapi.Container))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (r *runtimeService) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: proto.Clone(c.status()).(*runtimeapi.ContainerStatus)}
	if req.GetVerbose() {
		info, _ := json.Marshal(map[string]any{"pid": c.Pid, "argv": c.Argv, "env": c.Env, "dir": c.Dir, "binds": c.Binds, "sandboxId": c.SandboxID})
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func (r *runtimeService) UpdateContainerResources(context.Context, *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil // no cgroups: accepted and ignored
}

func (r *runtimeService) ReopenContainerLog(_ context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	s := r.s
	s.mu.Lock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	running := err == nil && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !running || c.log == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", c.ID)
	}
	if err := c.log.reopen(); err != nil {
		return nil, status.Errorf(codes.Internal, "reopening %s: %v", c.LogPath, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync runs the command as a process beside the container's: same
// environment, working directory and mount namespace (the network one is
// shared anyway).
func (r *runtimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	s := r.s
	s.mu.Lock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	var pid int
	var start uint64
	var env []string
	var dir string
	var ownNS bool
	if err == nil {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			err = status.Errorf(codes.FailedPrecondition, "container %s is not running", c.ID)
		}
		pid, start, env, dir, ownNS = c.Pid, c.PidStart, c.Env, c.Dir, len(c.Binds) > 0
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no command")
	}
	if req.GetTimeout() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.GetTimeout())*time.Second)
		defer cancel()
	}
	path, err := lookPath(req.Cmd[0], env)
	if err != nil {
		return &runtimeapi.ExecSyncResponse{Stderr: []byte(err.Error()), ExitCode: 127}, nil
	}
	var stdout, stderr bytes.Buffer
	cmd := &exec.Cmd{Path: path, Args: req.Cmd, Env: env, Dir: dir, Stdout: &stdout, Stderr: &stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if ownNS && alive(pid, start) {
		err = startInMountNSOf(cmd, pid)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "running %v: %v", req.Cmd, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		return nil, status.Errorf(codes.DeadlineExceeded, "command %v timed out after %ds", req.Cmd, req.GetTimeout())
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(cmd.ProcessState.ExitCode())}, nil
}
