package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// CreateDiskSnapshot implements sdk.Provider: a copy of a stopped VM's disk.
func (c *Cloud) CreateDiskSnapshot(ctx context.Context, req sdk.CreateDiskSnapshotRequest) (out sdk.DiskSnapshot, err error) {
	if req.IdempotencyToken == "" || len(req.IdempotencyToken) > 64 {
		return out, fmt.Errorf("%w: an idempotency token of 1 to 64 characters is required", sdk.ErrInvalidArgument)
	}
	if err := c.fault("CreateDiskSnapshot"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		if id, ok := s.Tokens["snapshot/"+req.IdempotencyToken]; ok && s.Snapshots[id] != nil {
			out = snapshotView(s.Snapshots[id])
			return nil
		}
		in, err := c.getInstance(s, req.InstanceID)
		if err != nil {
			return err
		}
		if in.Running && alive(in.PID, in.ID) {
			return fmt.Errorf("%w: instance %s is running; stop it before snapshotting its disk", sdk.ErrFailedPrecondition, in.ID)
		}
		snap := &snapshot{ID: s.newID("snap"), SourceInstanceID: in.ID, SourceImage: in.Image, Labels: req.Labels, CreatedAt: time.Now().UTC()}
		// Both disks, as a machine image (the AWS plugin's CreateImage)
		// covers the root and data volumes.
		if err := copyTree(ctx, c.rootDisk(in.ID), filepath.Join(c.snapshotDir(snap.ID), "root")); err != nil {
			return err
		}
		if err := copyTree(ctx, c.dataDisk(in.ID), filepath.Join(c.snapshotDir(snap.ID), "data")); err != nil {
			os.RemoveAll(c.snapshotDir(snap.ID))
			return err
		}
		snap.SizeBytes = dirSize(c.snapshotDir(snap.ID))
		s.Snapshots[snap.ID] = snap
		s.Tokens["snapshot/"+req.IdempotencyToken] = snap.ID
		out = snapshotView(snap)
		return nil
	})
	return out, err
}

func snapshotView(s *snapshot) sdk.DiskSnapshot {
	return sdk.DiskSnapshot{ID: s.ID, SourceInstanceID: s.SourceInstanceID, SourceImage: s.SourceImage, State: sdk.DiskSnapshotReady, SizeBytes: s.SizeBytes, Labels: s.Labels, CreatedAt: s.CreatedAt}
}

// GetDiskSnapshot implements sdk.Provider.
func (c *Cloud) GetDiskSnapshot(ctx context.Context, id string) (out sdk.DiskSnapshot, err error) {
	err = c.st.view(func(s *state) error {
		snap := s.Snapshots[id]
		if snap == nil {
			return fmt.Errorf("disk snapshot %q: %w", id, sdk.ErrNotFound)
		}
		out = snapshotView(snap)
		return nil
	})
	return out, err
}

// ListDiskSnapshots implements sdk.Provider.
func (c *Cloud) ListDiskSnapshots(ctx context.Context, labels map[string]string) (out []sdk.DiskSnapshot, err error) {
	err = c.st.view(func(s *state) error {
		for _, snap := range s.Snapshots {
			if hasLabels(snap.Labels, labels) {
				out = append(out, snapshotView(snap))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// DeleteDiskSnapshot implements sdk.Provider.
func (c *Cloud) DeleteDiskSnapshot(ctx context.Context, id string) error {
	if err := c.fault("DeleteDiskSnapshot"); err != nil {
		return err
	}
	return c.st.update(func(s *state) error {
		if s.Snapshots[id] == nil {
			return nil
		}
		delete(s.Snapshots, id)
		for k, v := range s.Tokens {
			if v == id {
				delete(s.Tokens, k)
			}
		}
		return os.RemoveAll(c.snapshotDir(id))
	})
}

func addressView(a *address) sdk.Address {
	kind := sdk.AddressPrivate
	if a.Public {
		kind = sdk.AddressPublic
	}
	return sdk.Address{ID: a.ID, IP: a.IP, Kind: kind, InstanceID: a.InstanceID, LoadBalancerID: a.LoadBalancerID}
}

// findAddress accepts an address id or its IP.
func findAddress(s *state, id string) (*address, error) {
	if a := s.Addresses[id]; a != nil {
		return a, nil
	}
	for _, a := range s.Addresses {
		if a.IP == id {
			return a, nil
		}
	}
	return nil, fmt.Errorf("address %q: %w", id, sdk.ErrNotFound)
}

// GetAddress implements sdk.Provider.
func (c *Cloud) GetAddress(ctx context.Context, id string) (out sdk.Address, err error) {
	err = c.st.view(func(s *state) error {
		a, err := findAddress(s, id)
		if err == nil {
			out = addressView(a)
		}
		return err
	})
	return out, err
}

// ListAddresses implements sdk.Provider.
func (c *Cloud) ListAddresses(ctx context.Context) (out []sdk.Address, err error) {
	err = c.st.view(func(s *state) error {
		for _, a := range s.Addresses {
			out = append(out, addressView(a))
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// ReleaseAddress implements sdk.Provider. An instance must be stopped to
// lose an address; a load balancer keeps its address until deleted.
func (c *Cloud) ReleaseAddress(ctx context.Context, id string) (out sdk.Address, err error) {
	if err := c.fault("ReleaseAddress"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		a, err := findAddress(s, id)
		if err != nil {
			return err
		}
		if a.LoadBalancerID != "" {
			return fmt.Errorf("%w: address %s belongs to load balancer %s; delete the load balancer to free it", sdk.ErrFailedPrecondition, a.IP, a.LoadBalancerID)
		}
		if in := s.Instances[a.InstanceID]; in != nil {
			if in.Running && alive(in.PID, in.ID) {
				return fmt.Errorf("%w: instance %s holding %s is running; stop it first", sdk.ErrFailedPrecondition, in.ID, a.IP)
			}
			if in.PrivateAddressID == a.ID {
				in.PrivateAddressID = ""
			}
			if in.PublicAddressID == a.ID {
				in.PublicAddressID = ""
			}
		}
		s.later(stopLater(a.ForwarderPID, a.ID, 5*time.Second))
		a.InstanceID, a.ForwarderPID = "", 0
		out = addressView(a)
		return nil
	})
	return out, err
}

// AttachAddress implements sdk.Provider. A private address becomes the
// instance's private IP, so the instance must be stopped and have none.
func (c *Cloud) AttachAddress(ctx context.Context, addressID, instanceID string) (out sdk.Address, err error) {
	if err := c.fault("AttachAddress"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		a, err := findAddress(s, addressID)
		if err != nil {
			return err
		}
		in, err := c.getInstance(s, instanceID)
		if err != nil {
			return err
		}
		if a.InstanceID == in.ID {
			out = addressView(a)
			return nil
		}
		if a.InstanceID != "" || a.LoadBalancerID != "" {
			return fmt.Errorf("%w: address %s is held by %s%s; release it first", sdk.ErrFailedPrecondition, a.IP, a.InstanceID, a.LoadBalancerID)
		}
		if a.Public {
			if in.PublicAddressID != "" {
				return fmt.Errorf("%w: instance %s already has a public address", sdk.ErrFailedPrecondition, in.ID)
			}
			in.PublicAddressID, a.InstanceID = a.ID, in.ID
			if err := c.startForwarder(s, a); err != nil {
				return err
			}
		} else {
			if in.Running && alive(in.PID, in.ID) {
				return fmt.Errorf("%w: instance %s is running; stop it to change its private address", sdk.ErrFailedPrecondition, in.ID)
			}
			if in.PrivateAddressID != "" {
				return fmt.Errorf("%w: instance %s already has private address %s", sdk.ErrFailedPrecondition, in.ID, in.PrivateAddressID)
			}
			in.PrivateAddressID, a.InstanceID = a.ID, in.ID
		}
		out = addressView(a)
		return nil
	})
	return out, err
}

func (c *Cloud) startForwarder(s *state, a *address) error {
	if !a.Public || alive(a.ForwarderPID, a.ID) {
		return nil
	}
	ports := make([]string, len(c.cfg.ForwardPorts))
	for i, p := range c.cfg.ForwardPorts {
		ports[i] = strconv.Itoa(p)
	}
	pid, err := spawn(c.cfg.Binary, []string{"forward", "--state-dir", c.cfg.StateDir, "--id", a.ID, "--ports", strings.Join(ports, ",")}, filepath.Join(c.cfg.StateDir, "addresses", a.ID+".log"))
	if err != nil {
		return err
	}
	a.ForwarderPID = pid
	return nil
}

// lbStatus is what a load balancer process reports about its backends.
type lbStatus struct {
	Health map[string]sdk.BackendHealth `json:"health"`
}

func (c *Cloud) lbView(s *state, lb *loadBalancer) sdk.LoadBalancer {
	out := sdk.LoadBalancer{
		ID: lb.ID, Name: lb.Name, Scheme: sdk.SchemeInternal, AddressID: lb.AddressID, ListenerPort: lb.ListenerPort, BackendPort: lb.BackendPort,
		HealthCheck: sdk.HealthCheck{Port: lb.HealthCheck.Port, Path: lb.HealthCheck.Path, Interval: lb.HealthCheck.Interval, Timeout: lb.HealthCheck.Timeout,
			HealthyThreshold: lb.HealthCheck.Healthy, UnhealthyThreshold: lb.HealthCheck.Unhealthy},
		TrafficEnabled: lb.TrafficEnabled, Labels: lb.Labels,
	}
	if lb.Public {
		out.Scheme = sdk.SchemePublic
	}
	if a := s.Addresses[lb.AddressID]; a != nil {
		out.IP = a.IP
	}
	var st lbStatus
	if data, err := os.ReadFile(c.lbStatusPath(lb.ID)); err == nil {
		json.Unmarshal(data, &st)
	}
	for _, b := range lb.Backends {
		h := st.Health[b]
		if h == "" {
			h = sdk.BackendInitial
		}
		out.Backends = append(out.Backends, sdk.Backend{InstanceID: b, Health: h})
	}
	return out
}

// CreateLoadBalancer implements sdk.Provider.
func (c *Cloud) CreateLoadBalancer(ctx context.Context, req sdk.CreateLoadBalancerRequest) (out sdk.LoadBalancer, err error) {
	switch {
	case req.IdempotencyToken == "" || len(req.IdempotencyToken) > 64:
		return out, fmt.Errorf("%w: an idempotency token of 1 to 64 characters is required", sdk.ErrInvalidArgument)
	case req.Scheme != sdk.SchemeInternal && req.Scheme != sdk.SchemePublic:
		return out, fmt.Errorf("%w: scheme %q", sdk.ErrInvalidArgument, req.Scheme)
	case req.ListenerPort <= 0 || req.ListenerPort > 65535 || req.BackendPort <= 0 || req.BackendPort > 65535:
		return out, fmt.Errorf("%w: listener port %d, backend port %d", sdk.ErrInvalidArgument, req.ListenerPort, req.BackendPort)
	case req.HealthCheck.Port <= 0 || req.HealthCheck.Port > 65535:
		return out, fmt.Errorf("%w: health check port %d", sdk.ErrInvalidArgument, req.HealthCheck.Port)
	}
	hc := req.HealthCheck.WithDefaults()
	if err := c.fault("CreateLoadBalancer"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		if id, ok := s.Tokens["lb/"+req.IdempotencyToken]; ok && s.LoadBalancers[id] != nil {
			out = c.lbView(s, s.LoadBalancers[id])
			return nil
		}
		a, err := findAddress(s, req.AddressID)
		if err != nil {
			return err
		}
		if a.InstanceID != "" || a.LoadBalancerID != "" {
			return fmt.Errorf("%w: address %s is held by %s%s; release it first", sdk.ErrFailedPrecondition, a.IP, a.InstanceID, a.LoadBalancerID)
		}
		if a.Public != (req.Scheme == sdk.SchemePublic) {
			return fmt.Errorf("%w: a %s load balancer needs a %s address", sdk.ErrInvalidArgument, req.Scheme, map[bool]string{true: "public", false: "private"}[req.Scheme == sdk.SchemePublic])
		}
		for _, b := range req.BackendInstanceIDs {
			if s.Instances[b] == nil {
				return fmt.Errorf("backend instance %q: %w", b, sdk.ErrNotFound)
			}
		}
		lb := &loadBalancer{
			ID: s.newID("lb"), Name: req.Name, AddressID: a.ID, Public: a.Public, ListenerPort: req.ListenerPort, BackendPort: req.BackendPort,
			Backends:    append([]string(nil), req.BackendInstanceIDs...),
			HealthCheck: healthCheck{Port: hc.Port, Path: hc.Path, Interval: hc.Interval, Timeout: hc.Timeout, Healthy: hc.HealthyThreshold, Unhealthy: hc.UnhealthyThreshold},
			Labels:      req.Labels,
		}
		pid, err := spawn(c.cfg.Binary, []string{"lb", "--state-dir", c.cfg.StateDir, "--id", lb.ID}, filepath.Join(c.cfg.StateDir, "lbs", lb.ID+".log"))
		if err != nil {
			return err
		}
		lb.PID = pid
		a.LoadBalancerID = lb.ID
		s.LoadBalancers[lb.ID] = lb
		s.Tokens["lb/"+req.IdempotencyToken] = lb.ID
		out = c.lbView(s, lb)
		return nil
	})
	return out, err
}

func (c *Cloud) getLB(s *state, id string) (*loadBalancer, error) {
	lb := s.LoadBalancers[id]
	if lb == nil {
		return nil, fmt.Errorf("load balancer %q: %w", id, sdk.ErrNotFound)
	}
	return lb, nil
}

// GetLoadBalancer implements sdk.Provider.
func (c *Cloud) GetLoadBalancer(ctx context.Context, id string) (out sdk.LoadBalancer, err error) {
	err = c.st.view(func(s *state) error {
		lb, err := c.getLB(s, id)
		if err == nil {
			out = c.lbView(s, lb)
		}
		return err
	})
	return out, err
}

// ListLoadBalancers implements sdk.Provider.
func (c *Cloud) ListLoadBalancers(ctx context.Context, labels map[string]string) (out []sdk.LoadBalancer, err error) {
	err = c.st.view(func(s *state) error {
		for _, lb := range s.LoadBalancers {
			if hasLabels(lb.Labels, labels) {
				out = append(out, c.lbView(s, lb))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// SetLoadBalancerTraffic implements sdk.Provider; the load balancer process
// picks the change up within its reload interval.
func (c *Cloud) SetLoadBalancerTraffic(ctx context.Context, id string, enabled bool) (out sdk.LoadBalancer, err error) {
	if err := c.fault("SetLoadBalancerTraffic"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		lb, err := c.getLB(s, id)
		if err != nil {
			return err
		}
		lb.TrafficEnabled = enabled
		out = c.lbView(s, lb)
		return nil
	})
	return out, err
}

// SetLoadBalancerBackends implements sdk.Provider.
func (c *Cloud) SetLoadBalancerBackends(ctx context.Context, id string, instanceIDs []string) (out sdk.LoadBalancer, err error) {
	if err := c.fault("SetLoadBalancerBackends"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		lb, err := c.getLB(s, id)
		if err != nil {
			return err
		}
		for _, b := range instanceIDs {
			if s.Instances[b] == nil {
				return fmt.Errorf("backend instance %q: %w", b, sdk.ErrNotFound)
			}
		}
		lb.Backends = append([]string(nil), instanceIDs...)
		out = c.lbView(s, lb)
		return nil
	})
	return out, err
}

// DeleteLoadBalancer implements sdk.Provider; its address is left released.
func (c *Cloud) DeleteLoadBalancer(ctx context.Context, id string) error {
	if err := c.fault("DeleteLoadBalancer"); err != nil {
		return err
	}
	return c.st.update(func(s *state) error {
		lb := s.LoadBalancers[id]
		if lb == nil {
			return nil
		}
		s.later(stopLater(lb.PID, lb.ID, 5*time.Second))
		if a := s.Addresses[lb.AddressID]; a != nil {
			a.LoadBalancerID = ""
		}
		delete(s.LoadBalancers, id)
		for k, v := range s.Tokens {
			if v == id {
				delete(s.Tokens, k)
			}
		}
		os.Remove(c.lbStatusPath(id))
		return nil
	})
}

// FailNext makes the next n calls of method fail with ErrUnavailable
// (admin, for fault-injection tests).
func (c *Cloud) FailNext(method string, n int) error {
	return c.st.update(func(s *state) error {
		s.Faults[method] += n
		return nil
	})
}

// KillVM kills a VM's processes at once, as a host losing power.
func (c *Cloud) KillVM(id string) error {
	return c.st.view(func(s *state) error {
		in, err := c.getInstance(s, id)
		if err != nil {
			return err
		}
		killGroup(in.PID, in.ID)
		return nil
	})
}

// SignalAux sends sig to the auxiliary process name (tests freeze kwok's
// kubelets with SIGSTOP and thaw them with SIGCONT).
func (c *Cloud) SignalAux(name string, sig syscall.Signal) error {
	return c.st.view(func(s *state) error {
		a, ok := s.Aux[name]
		if !ok {
			return fmt.Errorf("%w: no auxiliary process %q", sdk.ErrNotFound, name)
		}
		return syscall.Kill(-a.PID, sig)
	})
}

// RunAux starts argv as a long-lived process of the local cloud, outside
// any VM (kwok's simulated kubelets run this way), replacing a process of
// the same name. Down stops it.
func (c *Cloud) RunAux(name string, argv []string) error {
	return c.st.update(func(s *state) error {
		if old, ok := s.Aux[name]; ok {
			stopGroup(old.PID, old.Binary, 10*time.Second) // before the new one binds the same ports
		}
		pid, err := spawn(argv[0], argv[1:], filepath.Join(c.cfg.StateDir, "aux", name+".log"))
		if err != nil {
			return err
		}
		s.Aux[name] = auxProcess{PID: pid, Binary: argv[0]}
		return nil
	})
}

// Down stops every process of the local cloud and removes its state.
func (c *Cloud) Down() error {
	err := c.st.view(func(s *state) error {
		for _, a := range s.Aux {
			s.later(stopLater(a.PID, a.Binary, 10*time.Second))
		}
		for _, lb := range s.LoadBalancers {
			s.later(stopLater(lb.PID, lb.ID, 5*time.Second))
		}
		for _, a := range s.Addresses {
			s.later(stopLater(a.ForwarderPID, a.ID, 5*time.Second))
		}
		for _, in := range s.Instances {
			s.later(stopLater(in.PID, in.ID, 15*time.Second))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := deleteBridge(c.cfg.network()); err != nil {
		return fmt.Errorf("deleting bridge %s: %w", c.cfg.Bridge, err)
	}
	return os.RemoveAll(c.cfg.StateDir)
}
