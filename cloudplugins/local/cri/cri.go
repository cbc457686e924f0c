// Package cri is the local cloud's container runtime: a complete CRI
// RuntimeService and ImageService that the real kubelet drives, running
// containers as plain processes of the VM. There are no images and no root
// filesystems: an image reference names a host binary (Config.Images), and
// an image that names none runs a placeholder (Config.Placeholder) that
// answers HTTP 200 on the container's ports, so probes pass.
//
// What a container is here:
//
//   - a process (and its process group) running the image's binary with the
//     container's arguments: the container's command[0] is replaced by the
//     image's binary, since kubeadm's manifests
//     name the program inside the image;
//   - its stdout and stderr written to the kubelet's LogPath in the CRI log
//     format, so crictl logs and kubectl logs read them. The process writes
//     into named pipes under StateDir that it holds open for reading too, so
//     a runtime restart never hands it a SIGPIPE: while no runtime reads, it
//     only blocks once the pipe's 64 KiB buffer is full;
//   - identity mounts (kubeadm's hostPaths) need nothing. Other mounts
//     (service-account tokens, ConfigMaps, /etc/hosts) are bind-mounted in
//     a mount namespace of the container's own, set up on a locked OS
//     thread of the runtime just before it forks the process, so no helper
//     binary is needed. A missing mount point is created on the VM's
//     filesystem (an empty directory or file), as a container runtime
//     creates it in the rootfs. The termination-message file is not bound:
//     the kubelet then falls back to the container's log when asked to;
//   - a host-network sandbox shares the VM's network namespace and reports
//     no IP of its own, as containerd does (the kubelet uses the node's).
//     Any other sandbox gets an address from the pod CIDR (UpdateRuntimeConfig,
//     else 10.88.0.0/16) added as a /32 to lo of the runtime's network
//     namespace; its containers get it as POD_IP. There is no network
//     isolation: every pod shares the VM's ports.
//
// State (one JSON file per sandbox and container under StateDir) survives a
// restart of the runtime, which re-adopts the processes still running; as
// containerd's shims do, stopping the runtime leaves containers running.
// A re-adopted container's exit code cannot be known (the process is not
// the new runtime's child): it is reported as 255 with reason "Unknown".
//
// Not modelled: Exec, Attach and PortForward (streaming) answer
// Unimplemented (ExecSync, which probes use, works); GetContainerEvents
// answers Unimplemented (the kubelet's evented PLEG is off by default and
// the generic PLEG relists); Checkpoint; resource limits (UpdateContainerResources
// is accepted and ignored, no cgroups are made); user, PID, IPC and UTS
// namespaces; the sandbox's DNS configuration (/etc/resolv.conf is the VM's).
//
// A minimal KubeletConfiguration that runs the v1.36 kubelet against it
// standalone is in testdata/kubelet-config.yaml.
package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Config configures the runtime.
type Config struct {
	// Socket is the unix socket to serve CRI on.
	Socket string
	// StateDir holds the runtime's records and log pipes; it belongs in the
	// VM's /run, so that a reboot starts empty.
	StateDir string
	// Images maps an image reference to the binary that runs it.
	Images map[string]string
	// Placeholder is the argv prefix that runs an image not in Images, e.g.
	// [triad-cloud-local placeholder].
	Placeholder []string
	Logger      *slog.Logger
}

// Server is a running CRI runtime.
type Server struct {
	cfg Config

	mu         sync.Mutex
	closed     bool
	podCIDR    string
	sandboxes  map[string]*sandbox
	containers map[string]*container
	pulled     map[string]bool // references pulled (recorded, nothing fetched)
	stats      map[string]cpuSample
}

// Run serves CRI on cfg.Socket until ctx ends. It leaves containers running
// when it returns: a restarted runtime re-adopts them.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Socket == "" || cfg.StateDir == "" {
		return errors.New("cri: Socket and StateDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, sandboxes: map[string]*sandbox{}, containers: map[string]*container{}, pulled: map[string]bool{}, stats: map[string]cpuSample{}}
	for _, d := range []string{"sandboxes", "containers", "pipes"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return fmt.Errorf("cri: state directory: %w", err)
		}
	}
	if err := s.load(); err != nil {
		return err
	}
	os.Remove(cfg.Socket)
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o755); err != nil {
		return fmt.Errorf("cri: socket directory: %w", err)
	}
	l, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("cri: serving on %s: %w", cfg.Socket, err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(s.logCall))
	runtimeapi.RegisterRuntimeServiceServer(gs, &runtimeService{s: s})
	runtimeapi.RegisterImageServiceServer(gs, &imageService{s: s})
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	cfg.Logger.Info("serving CRI", "socket", cfg.Socket, "sandboxes", len(s.sandboxes), "containers", len(s.containers))
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	s.shutdown()
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("cri: serving: %w", err)
	}
	return nil
}

// logCall logs each CRI call (at debug level) and each failed one.
func (s *Server) logCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	if err != nil {
		s.cfg.Logger.Warn("CRI call failed", "method", method, "err", err)
	} else {
		s.cfg.Logger.Debug("CRI call", "method", method)
	}
	return resp, err
}

// shutdown stops watching containers without stopping them: the log readers
// close (the processes keep their pipes) and no record is written anymore,
// so a runtime started after this one owns them alone.
func (s *Server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.containers {
		c.closeReaders()
	}
}

// Main is the cri role of triad-cloud-local: args are its flags.
func Main(args []string) error {
	fs := flag.NewFlagSet("cri", flag.ContinueOnError)
	socket := fs.String("socket", "", "CRI unix socket to serve")
	stateDir := fs.String("state-dir", "", "state directory (in the VM's /run)")
	images := fs.String("images", "", "JSON file mapping image references to binaries")
	debug := fs.Bool("debug", false, "log every CRI call")
	placeholder := fs.String("placeholder", "", "argv (space-separated) running images not in --images (default: this executable + placeholder)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *socket == "" || *stateDir == "" {
		return fmt.Errorf("cri needs --socket and --state-dir")
	}
	imageMap := map[string]string{}
	if *images != "" {
		data, err := os.ReadFile(*images)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &imageMap); err != nil {
			return fmt.Errorf("--images %s: %w", *images, err)
		}
	}
	ph := strings.Fields(*placeholder)
	if len(ph) == 0 {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this executable for the placeholder: %w", err)
		}
		ph = []string{self, "placeholder"}
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("role", "cri")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return Run(ctx, Config{Socket: *socket, StateDir: *stateDir, Images: imageMap, Placeholder: ph, Logger: log})
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sandbox is the record of a pod sandbox.
type sandbox struct {
	ID             string                       `json:"id"`
	Config         *runtimeapi.PodSandboxConfig `json:"config"`
	RuntimeHandler string                       `json:"runtimeHandler,omitempty"`
	State          runtimeapi.PodSandboxState   `json:"state"`
	CreatedAt      int64                        `json:"createdAt"`
	IP             string                       `json:"ip,omitempty"`
}

func (sb *sandbox) hostNetwork() bool {
	return sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

func (s *Server) recordPath(kind, id string) string {
	return filepath.Join(s.cfg.StateDir, kind, id+".json")
}

// save writes v's record; callers hold s.mu. A closed server writes nothing:
// a successor owns the records.
func (s *Server) save(kind, id string, v any) {
	if s.closed {
		return
	}
	data, err := json.Marshal(v)
	if err == nil {
		tmp := s.recordPath(kind, id) + ".tmp"
		if err = os.WriteFile(tmp, data, 0o600); err == nil {
			err = os.Rename(tmp, s.recordPath(kind, id))
		}
	}
	if err != nil {
		s.cfg.Logger.Error("saving state", "kind", kind, "id", id, "err", err)
	}
}

func (s *Server) forget(kind, id string) {
	if !s.closed {
		os.Remove(s.recordPath(kind, id))
	}
}

// load reads the records a previous runtime left and re-adopts the
// containers still running.
func (s *Server) load() error {
	read := func(kind string, each func([]byte) error) error {
		entries, err := os.ReadDir(filepath.Join(s.cfg.StateDir, kind))
		if err != nil {
			return fmt.Errorf("cri: reading %s records: %w", kind, err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(s.cfg.StateDir, kind, e.Name()))
			if err == nil {
				err = each(data)
			}
			if err != nil {
				s.cfg.Logger.Warn("skipping unreadable record", "kind", kind, "file", e.Name(), "err", err)
			}
		}
		return nil
	}
	if err := read("sandboxes", func(data []byte) error {
		sb := &sandbox{}
		if err := json.Unmarshal(data, sb); err != nil {
			return err
		}
		s.sandboxes[sb.ID] = sb
		if sb.IP != "" && sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if err := addPodIP(sb.IP); err != nil {
				s.cfg.Logger.Error("restoring pod address", "sandbox", sb.ID, "ip", sb.IP, "err", err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if data, err := os.ReadFile(filepath.Join(s.cfg.StateDir, "images.json")); err == nil {
		json.Unmarshal(data, &s.pulled)
	}
	if data, err := os.ReadFile(filepath.Join(s.cfg.StateDir, "runtime.json")); err == nil {
		var rc struct{ PodCIDR string }
		json.Unmarshal(data, &rc)
		s.podCIDR = rc.PodCIDR
	}
	return read("containers", func(data []byte) error {
		c := &container{}
		if err := json.Unmarshal(data, c); err != nil {
			return err
		}
		c.done = make(chan struct{})
		s.containers[c.ID] = c
		switch c.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			s.adopt(c)
		case runtimeapi.ContainerState_CONTAINER_EXITED, runtimeapi.ContainerState_CONTAINER_UNKNOWN:
			close(c.done)
		}
		return nil
	})
}

func (s *Server) saveRuntime() {
	if s.closed {
		return
	}
	data, _ := json.Marshal(struct{ PodCIDR string }{s.podCIDR})
	os.WriteFile(filepath.Join(s.cfg.StateDir, "runtime.json"), data, 0o600)
	data, _ = json.Marshal(s.pulled)
	os.WriteFile(filepath.Join(s.cfg.StateDir, "images.json"), data, 0o600)
}
