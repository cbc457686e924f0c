// Package critest is an in-process container runtime for tests: a CRI
// RuntimeService served on a unix socket with the real CRI protos, holding
// containers that the test (or a simulated kubelet) starts and stops. It
// records state; it runs nothing.
package critest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Server is a recording CRI runtime service.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	// Endpoint is the unix:// address to dial.
	Endpoint string

	mu         sync.Mutex
	next       int
	containers map[string]*runtimeapi.Container
}

// Start serves a new runtime on a socket in a temporary directory.
func Start(t testing.TB) *Server {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Endpoint: "unix://" + sock, containers: map[string]*runtimeapi.Container{}}
	gs := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(gs, s)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return s
}

// Run records a running container for pod (mirror pod name) in namespace.
func (s *Server) Run(pod, namespace, container string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	id := fmt.Sprintf("c%04d", s.next)
	s.containers[id] = &runtimeapi.Container{
		Id:       id,
		Metadata: &runtimeapi.ContainerMetadata{Name: container},
		State:    runtimeapi.ContainerState_CONTAINER_RUNNING,
		Labels: map[string]string{
			"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": namespace, "io.kubernetes.container.name": container,
		},
	}
	return id
}

// Exit marks every container of pod as exited.
func (s *Server) Exit(pod string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if c.Labels["io.kubernetes.pod.name"] == pod {
			c.State = runtimeapi.ContainerState_CONTAINER_EXITED
		}
	}
}

// Running reports whether pod has a running container.
func (s *Server) Running(pod string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if c.Labels["io.kubernetes.pod.name"] == pod && c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return true
		}
	}
	return false
}

// Version implements the CRI.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "critest", RuntimeVersion: "0.0.1", RuntimeApiVersion: "v1"}, nil
}

// ListContainers implements the CRI with its filter semantics: id, state
// and label selector must all match.
func (s *Server) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	var out []*runtimeapi.Container
	for _, c := range s.containers {
		if f.GetId() != "" && f.GetId() != c.Id {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != c.State {
			continue
		}
		match := true
		for k, v := range f.GetLabelSelector() {
			match = match && c.Labels[k] == v
		}
		if match {
			// A copy: the response is marshalled after the lock is released.
			out = append(out, proto.Clone(c).(*runtimeapi.Container))
		}
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// Kubelet simulates the kubelet's static-pod loop against a Server: a
// manifest <name>.yaml in Dir gets a running container after StartDelay; a
// removed manifest's containers exit after StopDelay. With Stuck set,
// containers never exit.
type Kubelet struct {
	Dir, NodeName         string
	StartDelay, StopDelay time.Duration
	Stuck                 atomic.Bool
	cri                   *Server
}

// SimulateKubelet runs a Kubelet for names until the test ends.
func SimulateKubelet(t testing.TB, cri *Server, dir, nodeName string, names []string) *Kubelet {
	k := &Kubelet{Dir: dir, NodeName: nodeName, StartDelay: 200 * time.Millisecond, StopDelay: 300 * time.Millisecond, cri: cri}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.run(ctx, names); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return k
}

func (k *Kubelet) run(ctx context.Context, names []string) {
	pendingStart, pendingStop := map[string]time.Time{}, map[string]time.Time{}
	for ctx.Err() == nil {
		for _, n := range names {
			_, err := os.Stat(filepath.Join(k.Dir, n+".yaml"))
			pod := n + "-" + k.NodeName
			present, running := err == nil, k.cri.Running(pod)
			switch {
			case present && !running:
				delete(pendingStop, n)
				if at, ok := pendingStart[n]; !ok {
					pendingStart[n] = time.Now().Add(k.StartDelay)
				} else if time.Now().After(at) {
					k.cri.Run(pod, "kube-system", n)
					delete(pendingStart, n)
				}
			case !present && running && !k.Stuck.Load():
				delete(pendingStart, n)
				if at, ok := pendingStop[n]; !ok {
					pendingStop[n] = time.Now().Add(k.StopDelay)
				} else if time.Now().After(at) {
					k.cri.Exit(pod)
					delete(pendingStop, n)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
