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

	"github.com/triad-k8s/triad/cloudplugins/local/kubelet"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// The runtimes below are the bodies of the long-lived processes; the
// triad-cloud-local binary runs one when started with a role.

// Image names the processes a VM runs. Placeholders in commands and
// environment: {{ip}} (the VM's private address), {{disk}} (its disk
// directory), {{id}}, {{name}} and {{cri}} (the CRI socket of the VM's
// kubelet stand-in).
type Image struct {
	Processes []ImageProcess `json:"processes"`
}

// ImageProcess is one process of an image.
type ImageProcess struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Env     []string `json:"env"`
	// StartAfterTCP, if set, is a host:port that must accept connections
	// before the process starts: the kubelet stand-in waits for the agent,
	// as kubelet.service is ordered after triad-agent.service.
	StartAfterTCP string `json:"startAfterTCP,omitempty"`
}

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
	expand := strings.NewReplacer("{{ip}}", ip, "{{disk}}", c.diskDir(id), "{{id}}", id, "{{name}}", in.Name,
		"{{cri}}", kubelet.SocketPath(c.diskDir(id))).Replace
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
				cmd.Dir = c.diskDir(id)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TRIAD_VM_ID=" + id, "TRIAD_VM_IP=" + ip, "TRIAD_VM_DISK=" + c.diskDir(id)}
				for _, e := range p.Env {
					cmd.Env = append(cmd.Env, expand(e))
				}
				logf, _ := os.OpenFile(filepath.Join(c.vmDir(id), p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				cmd.Stdout, cmd.Stderr = logf, logf
				if err := cmd.Start(); err != nil {
					log.Error("starting process", "vm", id, "process", p.Name, "err", err)
				} else {
					done := make(chan struct{})
					go func() { cmd.Wait(); close(done) }()
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
				up, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(backendPort)), 2*time.Second)
				if err != nil {
					conn.Close()
					return
				}
				splice(conn, up)
			}()
		}
	}

	lastCheck := time.Time{}
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
			c.checkBackends(ctx, probe, cfg, &mu, health, streak)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cloud) checkBackends(ctx context.Context, probe *http.Client, cfg lbConfig, mu *sync.Mutex, health map[string]sdk.BackendHealth, streak map[string]int) {
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
					up, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 2*time.Second)
					if err != nil {
						conn.Close()
						return
					}
					splice(conn, up)
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

// splice copies both ways until either side closes.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
