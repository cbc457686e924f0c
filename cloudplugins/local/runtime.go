package local

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// The runtimes below are the bodies of the long-lived processes; the
// triad-cloud-local binary runs one when started with a role.

// CRISocket is where, inside a VM, its container runtime serves CRI.
const CRISocket = "/run/triad/cri.sock"

// Image names the processes a VM runs. Placeholders in commands and
// environment, filled in at every boot as cloud-init fills in instance
// metadata: {{ip}} (the VM's private address), {{disk}} (its root disk as
// the host sees it; for test images), {{id}}, {{name}} and {{cri}}
// (CRISocket).
type Image struct {
	Processes []ImageProcess `json:"processes"`
}

// ImageProcess is one process of an image.
type ImageProcess struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Env     []string `json:"env"`
	// StartAfterTCP, if set, is a host:port that must accept connections
	// before the process starts: the kubelet waits for the agent,
	// as kubelet.service is ordered after triad-agent.service.
	StartAfterTCP string `json:"startAfterTCP,omitempty"`
}

// Image reads image name, as a VM of it boots.
func (c *Cloud) Image(name string) (Image, error) { return c.loadImage(name) }

func (c *Cloud) loadImage(name string) (Image, error) {
	if name == NoneImage {
		return Image{}, nil
	}
	data, err := os.ReadFile(filepath.Join(c.cfg.ImagesDir, name+".json"))
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", name, err)
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return Image{}, fmt.Errorf("image %q: %w", name, err)
	}
	return img, nil
}

// RunVM supervises instance id's processes until ctx ends, restarting any
// that exits, then stops them (SIGTERM, SIGKILL after 10s).
func (c *Cloud) RunVM(ctx context.Context, id string, log *slog.Logger) error {
	var in instance
	var ip string
	if err := c.st.view(func(s *state) error {
		i, err := c.getInstance(s, id)
		if err != nil {
			return err
		}
		in = *i
		if a := s.Addresses[in.PrivateAddressID]; a != nil {
			ip = a.IP
		}
		return nil
	}); err != nil {
		return err
	}
	img, err := c.loadImage(in.Image)
	if err != nil {
		return err
	}
	// Boot: the VM's network, disks, /run and hostname, before any of its
	// processes starts (this process is the VM's first, in its namespaces).
	if err := setupVMNetwork(ip, c.cfg.network().gateway()); err != nil {
		return fmt.Errorf("VM %s network: %w", id, err)
	}
	if err := c.setupVMHost(id, in.Name, ip); err != nil {
		return fmt.Errorf("VM %s: %w", id, err)
	}
	log.Info("booted", "vm", id, "ip", ip, "hostname", in.Name)
	expand := strings.NewReplacer("{{ip}}", ip, "{{disk}}", c.diskDir(id), "{{id}}", id, "{{name}}", in.Name,
		"{{cri}}", CRISocket).Replace
	var wg sync.WaitGroup
	for _, p := range img.Processes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.StartAfterTCP != "" {
				waitTCP(ctx, expand(p.StartAfterTCP))
			}
			for ctx.Err() == nil {
				args := make([]string, len(p.Command))
				for i, a := range p.Command {
					args[i] = expand(a)
				}
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Dir = "/"
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TRIAD_VM_ID=" + id, "TRIAD_VM_IP=" + ip, "TRIAD_VM_DISK=" + c.diskDir(id)}
				for _, e := range p.Env {
					cmd.Env = append(cmd.Env, expand(e))
				}
				logf, _ := os.OpenFile(filepath.Join(c.vmDir(id), p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				cmd.Stdout, cmd.Stderr = logf, logf
				if err := cmd.Start(); err != nil {
					log.Error("starting process", "vm", id, "process", p.Name, "err", err)
				} else {
					pidFile := c.processPIDFile(id, p.Name)
					os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
					done := make(chan struct{})
					go func() { cmd.Wait(); os.Remove(pidFile); close(done) }()
					select {
					case <-done:
						log.Warn("process exited; restarting", "vm", id, "process", p.Name, "state", cmd.ProcessState.String())
					case <-ctx.Done():
						cmd.Process.Signal(syscall.SIGTERM)
						select {
						case <-done:
						case <-time.After(10 * time.Second):
							cmd.Process.Kill()
							<-done
						}
					}
				}
				if logf != nil {
					logf.Close()
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (c *Cloud) processPIDFile(id, name string) string {
	return filepath.Join(c.vmDir(id), name+".pid")
}

// RestartProcess restarts one process of running VM id by name, as
// 'systemctl restart' does a unit: SIGTERM, and the VM's supervisor starts
// it again a second after it exits. It returns once the process has exited.
func (c *Cloud) RestartProcess(ctx context.Context, id, name string) error {
	if _, err := c.vmPID(id); err != nil {
		return err
	}
	raw, err := os.ReadFile(c.processPIDFile(id, name))
	if err != nil {
		return fmt.Errorf("%w: VM %s runs no process %q now", sdk.ErrNotFound, id, name)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("VM %s: process %q has a corrupt pid file", id, name)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("VM %s: signalling %s (pid %d): %w", id, name, pid, err)
	}
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitTCP returns once addr accepts a connection or ctx ends.
func waitTCP(ctx context.Context, addr string) {
	for ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lbConfig is what a load balancer process needs from the state.
type lbConfig struct {
	lb       loadBalancer
	ip       string
	backends map[string]string // instance id -> private IP
}

func (c *Cloud) readLB(id string) (lbConfig, error) {
	var out lbConfig
	err := c.st.view(func(s *state) error {
		lb, err := c.getLB(s, id)
		if err != nil {
			return err
		}
		out.lb = *lb
		if a := s.Addresses[lb.AddressID]; a != nil {
			out.ip = a.IP
		}
		out.backends = map[string]string{}
		for _, b := range lb.Backends {
			if in := s.Instances[b]; in != nil {
				if a := s.Addresses[in.PrivateAddressID]; a != nil {
					out.backends[b] = a.IP
				}
			}
		}
		return nil
	})
	return out, err
}

// RunLB runs load balancer id until ctx ends or the load balancer is
// deleted: it health-checks the backends' gates, listens only while traffic
// is enabled, and proxies each new connection to a healthy backend.
func (c *Cloud) RunLB(ctx context.Context, id string, log *slog.Logger) error {
	probe := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a health check tests liveness, as cloud LBs do
		DisableKeepAlives: true,
	}}
	var mu sync.Mutex
	health := map[string]sdk.BackendHealth{}
	streak := map[string]int{} // >0 consecutive successes, <0 failures
	var cfg lbConfig
	var listener net.Listener
	next := 0
	defer func() {
		if listener != nil {
			listener.Close()
		}
	}()

	pick := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		var healthy []string
		for _, b := range cfg.lb.Backends {
			if health[b] == sdk.BackendHealthy && cfg.backends[b] != "" {
				healthy = append(healthy, cfg.backends[b])
			}
		}
		if len(healthy) == 0 {
			return "", false
		}
		next++
		return healthy[next%len(healthy)], true
	}
	serve := func(l net.Listener, backendPort int) {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				ip, ok := pick()
				if !ok {
					conn.Close()
					return
				}
				backend := net.JoinHostPort(ip, strconv.Itoa(backendPort))
				up, err := net.DialTimeout("tcp", backend, 2*time.Second)
				if err != nil {
					log.Warn("backend refused a connection; closing the client's", "client", conn.RemoteAddr().String(), "backend", backend, "err", err)
					conn.Close()
					return
				}
				logSplice(log, "load balancer", conn, backend, splice(conn, up))
			}()
		}
	}

	lastCheck := time.Time{}
	hostIP := ""
	defer func() {
		if hostIP != "" {
			removeHostAddress(c.cfg.network(), hostIP)
		}
	}()
	for {
		fresh, err := c.readLB(id)
		if errors.Is(err, sdk.ErrNotFound) {
			return nil // deleted
		}
		if err == nil {
			mu.Lock()
			cfg = fresh
			mu.Unlock()
		}
		if cfg.ip != "" && hostIP == "" {
			// The load balancer's address lives on the bridge while it
			// exists, so the host and every VM reach it.
			if err := addHostAddress(c.cfg.network(), cfg.ip); err != nil {
				log.Error("adding the load balancer's address", "lb", id, "err", err)
			} else {
				hostIP = cfg.ip
			}
		}
		if cfg.lb.TrafficEnabled && listener == nil && cfg.ip != "" {
			l, err := net.Listen("tcp", net.JoinHostPort(cfg.ip, strconv.Itoa(cfg.lb.ListenerPort)))
			if err != nil {
				log.Error("listening", "lb", id, "err", err)
			} else {
				listener = l
				go serve(l, cfg.lb.BackendPort)
			}
		}
		if !cfg.lb.TrafficEnabled && listener != nil {
			listener.Close()
			listener = nil
		}
		if time.Since(lastCheck) >= cfg.lb.HealthCheck.Interval {
			lastCheck = time.Now()
			c.checkBackends(ctx, log, probe, cfg, &mu, health, streak)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cloud) checkBackends(ctx context.Context, log *slog.Logger, probe *http.Client, cfg lbConfig, mu *sync.Mutex, health map[string]sdk.BackendHealth, streak map[string]int) {
	hc := cfg.lb.HealthCheck
	var wg sync.WaitGroup
	results := make(map[string]bool, len(cfg.backends))
	var rmu sync.Mutex
	for b, ip := range cfg.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, hc.Timeout)
			defer cancel()
			url := "https://" + net.JoinHostPort(ip, strconv.Itoa(hc.Port)) + hc.Path
			req, _ := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
			resp, err := probe.Do(req)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if resp != nil {
				resp.Body.Close()
			}
			rmu.Lock()
			results[b] = ok
			rmu.Unlock()
		}()
	}
	wg.Wait()
	mu.Lock()
	before := maps.Clone(health)
	for b, ok := range results {
		switch {
		case ok && streak[b] >= 0:
			streak[b]++
		case ok:
			streak[b] = 1
		case streak[b] <= 0:
			streak[b]--
		default:
			streak[b] = -1
		}
		if streak[b] >= hc.Healthy {
			health[b] = sdk.BackendHealthy
		} else if -streak[b] >= hc.Unhealthy {
			health[b] = sdk.BackendUnhealthy
		} else if health[b] == "" {
			health[b] = sdk.BackendInitial
		}
	}
	for b := range health {
		if _, ok := cfg.backends[b]; !ok {
			delete(health, b)
			delete(streak, b)
		}
	}
	changed := !maps.Equal(before, health)
	snapshot := maps.Clone(health)
	mu.Unlock()
	if changed {
		for b, h := range snapshot {
			if before[b] != h {
				log.Info("backend health changed", "backend", b, "ip", cfg.backends[b], "from", string(before[b]), "to", string(h))
			}
		}
		writeJSON(c.lbStatusPath(cfg.lb.ID), lbStatus{Health: snapshot})
	}
}

// RunForwarder forwards ports of public address id to the private address
// of the instance holding it, as a cloud's elastic IP does with NAT.
func (c *Cloud) RunForwarder(ctx context.Context, id string, ports []int, log *slog.Logger) error {
	var publicIP string
	if err := c.st.view(func(s *state) error {
		a, err := findAddress(s, id)
		if err == nil {
			publicIP = a.IP
		}
		return err
	}); err != nil {
		return err
	}
	target := func() string {
		var ip string
		c.st.view(func(s *state) error {
			if a := s.Addresses[id]; a != nil {
				if in := s.Instances[a.InstanceID]; in != nil {
					if p := s.Addresses[in.PrivateAddressID]; p != nil {
						ip = p.IP
					}
				}
			}
			return nil
		})
		return ip
	}
	if err := addHostAddress(c.cfg.network(), publicIP); err != nil {
		return fmt.Errorf("forwarder of %s: %w", publicIP, err)
	}
	defer removeHostAddress(c.cfg.network(), publicIP)
	var listeners []net.Listener
	for _, port := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(publicIP, strconv.Itoa(port)))
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("forwarder of %s: %w", publicIP, err)
		}
		listeners = append(listeners, l)
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					ip := target()
					if ip == "" {
						conn.Close()
						return
					}
					backend := net.JoinHostPort(ip, strconv.Itoa(port))
					up, err := net.DialTimeout("tcp", backend, 2*time.Second)
					if err != nil {
						log.Warn("instance refused a connection; closing the client's", "client", conn.RemoteAddr().String(), "backend", backend, "err", err)
						conn.Close()
						return
					}
					logSplice(log, "forwarded", conn, backend, splice(conn, up))
				}()
			}
		}()
	}
	<-ctx.Done()
	for _, l := range listeners {
		l.Close()
	}
	return nil
}

// spliceStats is what one proxied connection carried and how it ended.
type spliceStats struct {
	up, down       int64  // bytes client->backend, backend->client
	first          string // the side whose stream ended first: "client" or "backend"
	upErr, downErr error  // read or write errors other than a clean EOF
	took           time.Duration
}

// splice copies both ways until both directions end: a side's EOF is
// passed on as a half-close, as a cloud's TCP load balancer does.
func splice(client, backend net.Conn) spliceStats {
	start := time.Now()
	var st spliceStats
	var mu sync.Mutex
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn, n *int64, errp *error, side string) {
		c, err := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		mu.Lock()
		*n, *errp = c, err
		if st.first == "" {
			st.first = side
		}
		mu.Unlock()
		done <- struct{}{}
	}
	go cp(backend, client, &st.up, &st.upErr, "client")
	go cp(client, backend, &st.down, &st.downErr, "backend")
	<-done
	<-done
	client.Close()
	backend.Close()
	st.took = time.Since(start)
	return st
}

// logSplice records one connection's end; errors and connections the
// backend ended first are what explain a client's EOF.
func logSplice(log *slog.Logger, what string, client net.Conn, backend string, st spliceStats) {
	attrs := []any{"client", client.RemoteAddr().String(), "backend", backend, "took", st.took.Round(time.Millisecond).String(),
		"bytesUp", st.up, "bytesDown", st.down, "endedFirst", st.first}
	if st.upErr != nil {
		attrs = append(attrs, "clientSideErr", st.upErr.Error())
	}
	if st.downErr != nil {
		attrs = append(attrs, "backendSideErr", st.downErr.Error())
	}
	log.Info(what+" connection closed", attrs...)
}
