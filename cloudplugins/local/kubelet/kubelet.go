// Package kubelet is the local cloud's kubelet stand-in. Inside a local VM
// it does for static pods what a kubelet does on a real node, with
// processes instead of containers: it runs the pods whose manifests are in
// the VM's manifest directory, restarts containers that exit, stops a pod
// (SIGTERM, then SIGKILL after its grace period) when its manifest goes,
// and answers the CRI RuntimeService calls that triad-agent and crictl make
// on a unix socket. So the agent runs its production CRI code unchanged.
//
// A container's image names a binary (Config.Images); its hostPath volumes
// resolve inside the VM's directory; the VM's address stands in for
// localhost and 127.0.0.1 in its arguments.
package kubelet

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// Config configures a kubelet stand-in.
type Config struct {
	NodeName string
	// IP is the VM's address, standing in for localhost.
	IP string
	// Root is the VM's directory; hostPath volumes resolve inside it.
	Root string
	// ManifestDir is the static-pod manifest directory (a real path).
	ManifestDir string
	// Images maps an image reference to the binary that runs it.
	Images map[string]string
	// Socket is the CRI unix socket to serve.
	Socket string
	// DefaultGracePeriod applies when a pod sets none; 30s by default.
	DefaultGracePeriod time.Duration
	Logger             *slog.Logger
}

// SocketPath is where the stand-in of the VM in root serves CRI:
// root/run/triad/cri.sock, or a short path in the temporary directory when
// that is too long for a unix socket (108 bytes on Linux).
func SocketPath(root string) string {
	p := filepath.Join(root, "run", "triad", "cri.sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(os.TempDir(), fmt.Sprintf("triad-cri-%x.sock", sum[:6]))
}

// Kubelet runs static pods as processes.
type Kubelet struct {
	cfg Config

	mu         sync.Mutex
	next       int
	pods       map[string]*pod // by manifest file name
	sandboxes  map[string]*runtimeapi.PodSandbox
	containers map[string]*container
}

type pod struct {
	manifest string
	hash     [32]byte
	spec     corev1.Pod
	sandbox  string
	// running maps a container name to its current container id.
	running map[string]string
	stopped bool
}

type container struct {
	cri      *runtimeapi.Container
	status   *runtimeapi.ContainerStatus
	cmd      *exec.Cmd
	done     chan struct{}
	attempts uint32
}

// New returns a kubelet stand-in for cfg.
func New(cfg Config) *Kubelet {
	if cfg.DefaultGracePeriod <= 0 {
		cfg.DefaultGracePeriod = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Kubelet{cfg: cfg, pods: map[string]*pod{}, sandboxes: map[string]*runtimeapi.PodSandbox{}, containers: map[string]*container{}}
}

// Run serves the CRI socket and syncs pods until ctx ends, then stops
// every pod.
func (k *Kubelet) Run(ctx context.Context) error {
	os.Remove(k.cfg.Socket)
	if err := os.MkdirAll(filepath.Dir(k.cfg.Socket), 0o755); err != nil {
		return err
	}
	l, err := net.Listen("unix", k.cfg.Socket)
	if err != nil {
		return fmt.Errorf("serving CRI on %s: %w", k.cfg.Socket, err)
	}
	gs := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(gs, &criServer{k: k})
	runtimeapi.RegisterImageServiceServer(gs, &imageServer{k: k})
	go gs.Serve(l)
	defer gs.Stop()
	for {
		k.sync()
		select {
		case <-ctx.Done():
			k.stopAll()
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (k *Kubelet) newID(prefix string) string {
	k.next++
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d/%d", k.cfg.NodeName, prefix, k.next, time.Now().UnixNano()))
	return fmt.Sprintf("%x", sum[:16])
}

// sync brings the running pods in line with the manifest directory.
func (k *Kubelet) sync() {
	want := k.readManifests()
	k.mu.Lock()
	var stop []*pod
	for name, p := range k.pods {
		if w, ok := want[name]; !ok || w.hash != p.hash {
			stop = append(stop, p)
			delete(k.pods, name)
		}
	}
	k.mu.Unlock()
	for _, p := range stop {
		k.stopPod(p)
	}
	for name, w := range want {
		k.mu.Lock()
		p, ok := k.pods[name]
		if !ok {
			p = w
			k.startSandbox(p)
			k.pods[name] = p
		}
		k.mu.Unlock()
		k.ensureContainers(p)
	}
}

func (k *Kubelet) readManifests() map[string]*pod {
	out := map[string]*pod{}
	entries, err := os.ReadDir(k.cfg.ManifestDir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".json")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(k.cfg.ManifestDir, e.Name()))
		if err != nil {
			continue
		}
		p := &pod{manifest: e.Name(), hash: sha256.Sum256(data), running: map[string]string{}}
		if err := yaml.Unmarshal(data, &p.spec); err != nil || p.spec.Name == "" {
			k.cfg.Logger.Warn("skipping unparsable manifest", "file", e.Name(), "err", err)
			continue
		}
		out[e.Name()] = p
	}
	return out
}

func (k *Kubelet) podLabels(p *pod) map[string]string {
	ns := p.spec.Namespace
	if ns == "" {
		ns = "default"
	}
	return map[string]string{
		"io.kubernetes.pod.name":      p.spec.Name + "-" + k.cfg.NodeName,
		"io.kubernetes.pod.namespace": ns,
		"io.kubernetes.pod.uid":       fmt.Sprintf("%x", p.hash[:8]),
	}
}

// startSandbox records the pod's sandbox; callers hold k.mu.
func (k *Kubelet) startSandbox(p *pod) {
	labels := k.podLabels(p)
	sb := &runtimeapi.PodSandbox{
		Id:        k.newID("sandbox"),
		Metadata:  &runtimeapi.PodSandboxMetadata{Name: labels["io.kubernetes.pod.name"], Uid: labels["io.kubernetes.pod.uid"], Namespace: labels["io.kubernetes.pod.namespace"]},
		State:     runtimeapi.PodSandboxState_SANDBOX_READY,
		CreatedAt: time.Now().UnixNano(),
		Labels:    labels,
	}
	k.sandboxes[sb.Id] = sb
	p.sandbox = sb.Id
}

// ensureContainers starts every container of p that does not run; a
// container that exited is restarted after a second, as restartPolicy
// Always does (without the kubelet's exponential back-off).
func (k *Kubelet) ensureContainers(p *pod) {
	for _, spec := range p.spec.Spec.Containers {
		k.mu.Lock()
		id := p.running[spec.Name]
		c := k.containers[id]
		stopped := p.stopped
		k.mu.Unlock()
		if stopped {
			return
		}
		if c != nil {
			select {
			case <-c.done:
				if time.Since(time.Unix(0, c.status.FinishedAt)) < time.Second {
					continue
				}
			default:
				continue
			}
		}
		var attempt uint32
		if c != nil {
			attempt = c.attempts + 1
		}
		k.startContainer(p, spec, attempt)
	}
}

func (k *Kubelet) startContainer(p *pod, spec corev1.Container, attempt uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	labels := k.podLabels(p)
	labels["io.kubernetes.container.name"] = spec.Name
	id := k.newID("container")
	c := &container{
		cri: &runtimeapi.Container{
			Id: id, PodSandboxId: p.sandbox, Metadata: &runtimeapi.ContainerMetadata{Name: spec.Name, Attempt: attempt},
			Image: &runtimeapi.ImageSpec{Image: spec.Image}, ImageRef: spec.Image, State: runtimeapi.ContainerState_CONTAINER_CREATED,
			CreatedAt: time.Now().UnixNano(), Labels: labels,
		},
		done:     make(chan struct{}),
		attempts: attempt,
	}
	c.status = &runtimeapi.ContainerStatus{Id: id, Metadata: c.cri.Metadata, State: c.cri.State, CreatedAt: c.cri.CreatedAt, Image: c.cri.Image, ImageRef: spec.Image, Labels: labels}
	k.containers[id] = c
	p.running[spec.Name] = id

	cmd, err := k.command(p, spec)
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		k.cfg.Logger.Error("starting container", "pod", p.spec.Name, "container", spec.Name, "err", err)
		c.setExited(1, err.Error())
		close(c.done)
		return
	}
	c.cmd = cmd
	c.cri.State, c.status.State = runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_RUNNING
	c.status.StartedAt = time.Now().UnixNano()
	go func() {
		err := cmd.Wait()
		code := int32(0)
		if cmd.ProcessState != nil {
			code = int32(cmd.ProcessState.ExitCode())
		}
		k.mu.Lock()
		c.setExited(code, fmt.Sprint(err))
		k.mu.Unlock()
		close(c.done)
	}()
}

func (c *container) setExited(code int32, reason string) {
	c.cri.State, c.status.State = runtimeapi.ContainerState_CONTAINER_EXITED, runtimeapi.ContainerState_CONTAINER_EXITED
	c.status.FinishedAt, c.status.ExitCode, c.status.Message = time.Now().UnixNano(), code, reason
}

// command builds the process of a container: the image's binary, the
// container's arguments with hostPaths moved into the VM's directory and the
// VM's address for loopback, and an explicit environment.
func (k *Kubelet) command(p *pod, spec corev1.Container) (*exec.Cmd, error) {
	bin, ok := k.cfg.Images[spec.Image]
	if !ok {
		return nil, fmt.Errorf("image %q is not in this VM's image (known: %v)", spec.Image, keys(k.cfg.Images))
	}
	args := append(append([]string{}, spec.Command...), spec.Args...)
	if len(args) > 0 {
		args = args[1:] // the image's binary replaces the command's program
	}
	r := k.rewriter(p, spec)
	for i, a := range args {
		args[i] = dedupeList(r.Replace(a))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = k.cfg.Root
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range spec.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+r.Replace(e.Value))
	}
	logDir := filepath.Join(k.cfg.Root, "var", "log", "pods")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(logDir, p.spec.Name+"_"+spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// rewriter maps container paths to the VM's directory and loopback to the
// VM's address, in one pass, longest mount path first.
func (k *Kubelet) rewriter(p *pod, spec corev1.Container) *strings.Replacer {
	hostPaths := map[string]string{}
	for _, v := range p.spec.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	type pair struct{ from, to string }
	var pairs []pair
	for _, m := range spec.VolumeMounts {
		if hp, ok := hostPaths[m.Name]; ok {
			pairs = append(pairs, pair{m.MountPath, filepath.Join(k.cfg.Root, hp)})
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].from) > len(pairs[j].from) })
	var oldnew []string
	for _, pr := range pairs {
		oldnew = append(oldnew, pr.from, pr.to)
	}
	oldnew = append(oldnew, "127.0.0.1", k.cfg.IP, "localhost", k.cfg.IP)
	return strings.NewReplacer(oldnew...)
}

// dedupeList removes repeated items from a --flag=a,b list: with the VM's
// address standing in for 127.0.0.1, etcd's kubeadm listen URLs
// "https://127.0.0.1:2379,https://IP:2379" would name the same URL twice.
func dedupeList(arg string) string {
	flag, value, ok := strings.Cut(arg, "=")
	if !ok || !strings.HasPrefix(flag, "--") || !strings.Contains(value, ",") {
		return arg
	}
	var out []string
	for _, item := range strings.Split(value, ",") {
		if !slices.Contains(out, item) {
			out = append(out, item)
		}
	}
	return flag + "=" + strings.Join(out, ",")
}

// stopPod stops p's containers: SIGTERM to each process group, SIGKILL
// after the pod's grace period.
func (k *Kubelet) stopPod(p *pod) {
	k.mu.Lock()
	p.stopped = true
	var cs []*container
	for _, id := range p.running {
		if c := k.containers[id]; c != nil {
			cs = append(cs, c)
		}
	}
	if sb := k.sandboxes[p.sandbox]; sb != nil {
		sb.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	}
	k.mu.Unlock()
	grace := k.cfg.DefaultGracePeriod
	if g := p.spec.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	for _, c := range cs {
		if c.cmd != nil && c.cmd.Process != nil {
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	for _, c := range cs {
		select {
		case <-c.done:
		case <-deadline:
			if c.cmd != nil && c.cmd.Process != nil {
				syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			}
			<-c.done
		}
	}
}

func (k *Kubelet) stopAll() {
	k.mu.Lock()
	var ps []*pod
	for name, p := range k.pods {
		ps = append(ps, p)
		delete(k.pods, name)
	}
	k.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); k.stopPod(p) }()
	}
	wg.Wait()
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
