// Package local is triad's embedded default cloud: everything a migration
// needs from a cloud, on one machine, without Docker (DESIGN §5). It needs
// root.
//
//   - A VM is its own host: a supervisor process in new network, mount and
//     UTS namespaces runs the processes of its image. It has one address on
//     the cloud's bridge (network.go), its own 127.0.0.1, hostname and
//     machine id, and two disks, root and data (vmhost.go).
//   - A disk snapshot is a copy of both disks of a stopped VM (reflinked
//     when the filesystem allows), as a machine image is; a VM created
//     from it gets copies of both.
//   - A static address is an address of the cloud's private pool; a public
//     address is a forwarder to the private address of the VM holding it,
//     as an elastic IP is NAT.
//   - A load balancer is a TCP proxy on a static address that health-checks
//     each backend's agent gate and sends new connections only to healthy
//     backends; it listens only while traffic is enabled.
//
// VMs, load balancers and forwarders are long-lived processes (the
// triad-cloud-local binary re-executed), so they outlive the plugin process
// that each triad invocation starts. All state lives in one directory.
package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/triad-k8s/triad/agent/atomicfile"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Version of the local cloud plugin.
var Version = "dev"

// Zones of the local cloud.
var Zones = []string{"local-a", "local-b", "local-c"}

// NoneImage boots a VM that runs no process; tests use it.
const NoneImage = "none"

// Config configures the local cloud; it arrives as JSON in the plugin's
// configuration.
type Config struct {
	// StateDir holds all state; default $XDG_STATE_HOME/triad/localcloud.
	StateDir string `json:"stateDir"`
	// Binary is triad-cloud-local, re-executed for long-lived processes;
	// default: this executable.
	Binary string `json:"binary"`
	// ImagesDir holds <image>.json files; default <StateDir>/images.
	ImagesDir string `json:"imagesDir,omitempty"`
	// PrivatePrefix and PublicPrefix are the first three octets of the
	// address pools and Bridge the bridge carrying them (network.go); by
	// default a /24 of 198.18.0.0/15 that no interface of this machine
	// uses, chosen when the cloud is first created and kept.
	PrivatePrefix string `json:"privatePrefix,omitempty"`
	PublicPrefix  string `json:"publicPrefix,omitempty"`
	Bridge        string `json:"bridge,omitempty"`
	// ForwardPorts are the ports a public address forwards; default 6443.
	ForwardPorts []int `json:"forwardPorts,omitempty"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() (Config, error) {
	if c.StateDir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return c, fmt.Errorf("no state directory given and no home directory: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		c.StateDir = filepath.Join(base, "triad", "localcloud")
	}
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, err
		}
		c.Binary = exe
	}
	if c.ImagesDir == "" {
		c.ImagesDir = filepath.Join(c.StateDir, "images")
	}
	if len(c.ForwardPorts) == 0 {
		c.ForwardPorts = []int{6443}
	}
	return c, nil
}

// Cloud is the local cloud. It implements sdk.Provider and offers an admin
// interface (CreateVM, FailNext, KillVM, Down) outside the plugin contract.
type Cloud struct {
	cfg Config
	st  store
}

var _ sdk.Provider = (*Cloud)(nil)

// New returns the local cloud for cfg and records the effective
// configuration in the state directory, where the cloud's long-lived
// processes read it (Open).
func New(cfg Config) (*Cloud, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkHost(); err != nil {
		return nil, err
	}
	if err := checkStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	if (cfg.PrivatePrefix == "") != (cfg.PublicPrefix == "") {
		return nil, fmt.Errorf("%w: set both address pools or neither (privatePrefix %q, publicPrefix %q)", sdk.ErrInvalidArgument, cfg.PrivatePrefix, cfg.PublicPrefix)
	}
	for _, p := range []string{cfg.PrivatePrefix, cfg.PublicPrefix} {
		if ip := net.ParseIP(p + ".1").To4(); p != "" && (ip == nil || ip.IsLoopback()) {
			return nil, fmt.Errorf("%w: address pool %q must be the first three octets of a non-loopback IPv4 /24: a VM lives in its own network namespace, where the host's loopback addresses do not exist", sdk.ErrInvalidArgument, p)
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating local cloud state directory: %w", err)
	}
	if cfg.Bridge == "" && cfg.PrivatePrefix == "" && cfg.PublicPrefix == "" {
		// Keep the network this cloud was created with.
		if prev, err := Open(cfg.StateDir); err == nil {
			cfg.Bridge, cfg.PrivatePrefix, cfg.PublicPrefix = prev.cfg.Bridge, prev.cfg.PrivatePrefix, prev.cfg.PublicPrefix
		}
	}
	if cfg.Bridge == "" || cfg.PrivatePrefix == "" {
		if cfg.PrivatePrefix != "" {
			if cfg.Bridge == "" {
				cfg.Bridge = bridgeName(cfg.StateDir)
			}
		} else {
			n, err := chooseNetwork(cfg.StateDir)
			if err != nil {
				return nil, err
			}
			cfg.Bridge, cfg.PrivatePrefix, cfg.PublicPrefix = n.Bridge, n.PrivatePrefix, n.PublicPrefix
		}
	}
	if err := ensureBridge(cfg.network()); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(cfg.StateDir, "config.json"), cfg); err != nil {
		return nil, err
	}
	return &Cloud{cfg: cfg, st: store{dir: cfg.StateDir}}, nil
}

// Open returns the local cloud whose state is in stateDir, with the
// configuration recorded there.
func Open(stateDir string) (*Cloud, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("opening local cloud in %s: %w", stateDir, err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("local cloud config in %s: %w", stateDir, err)
	}
	return &Cloud{cfg: cfg, st: store{dir: cfg.StateDir}}, nil
}

// StateDir is where the cloud keeps its state.
func (c *Cloud) StateDir() string { return c.cfg.StateDir }

func (cfg Config) network() Network {
	return Network{Bridge: cfg.Bridge, PrivatePrefix: cfg.PrivatePrefix, PublicPrefix: cfg.PublicPrefix}
}

// Network is the cloud's bridge and address pools.
func (c *Cloud) Network() Network { return c.cfg.network() }

func (c *Cloud) vmDir(id string) string { return filepath.Join(c.cfg.StateDir, "vms", id) }

// DeletedVMLogs is where a deleted VM's process logs stay (its supervisor,
// agent, kubelet, runtime and kubeadm logs, not its disks), as a cloud
// keeps a terminated instance's console output for a while: what a VM
// logged before an upgrade deleted it is what explains a failure.
func (c *Cloud) DeletedVMLogs(id string) string {
	return filepath.Join(c.cfg.StateDir, "deleted-vms", id)
}

func (c *Cloud) keepConsoleLogs(id string) {
	logs, _ := filepath.Glob(filepath.Join(c.vmDir(id), "*.log"))
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil && os.MkdirAll(c.DeletedVMLogs(id), 0o700) == nil {
			os.WriteFile(filepath.Join(c.DeletedVMLogs(id), filepath.Base(l)), data, 0o600)
		}
	}
}
func (c *Cloud) diskDir(id string) string     { return c.rootDisk(id) }
func (c *Cloud) snapshotDir(id string) string { return filepath.Join(c.cfg.StateDir, "snapshots", id) }
func (c *Cloud) lbStatusPath(id string) string {
	return filepath.Join(c.cfg.StateDir, "lbs", id+".status.json")
}

// DiskDir returns the directory that is instance id's root disk, as the
// host sees it: the VM's /etc/kubernetes is DiskDir/etc/kubernetes.
func (c *Cloud) DiskDir(id string) string { return c.diskDir(id) }

// DataDiskDir returns the directory that is instance id's data disk, the
// VM's /var/lib/etcd.
func (c *Cloud) DataDiskDir(id string) string { return c.dataDisk(id) }

// RunDir returns the directory that is instance id's /run while it runs.
func (c *Cloud) RunDir(id string) string { return c.runDir(id) }

// fault consumes an injected failure of method, if one is set. It is its
// own transaction so the consumed fault is saved although the call fails.
func (c *Cloud) fault(method string) error {
	hit := false
	err := c.st.update(func(s *state) error {
		if s.Faults[method] > 0 {
			s.Faults[method]--
			hit = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if hit {
		return fmt.Errorf("%w: injected fault in %s (local cloud admin)", sdk.ErrUnavailable, method)
	}
	return nil
}

// PluginInfo implements sdk.Provider.
func (c *Cloud) PluginInfo(ctx context.Context) (sdk.PluginInfo, error) {
	images := []string{NoneImage}
	entries, _ := os.ReadDir(c.cfg.ImagesDir)
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			images = append(images, n)
		}
	}
	return sdk.PluginInfo{Name: "local", Version: Version, APIVersions: []string{sdk.APIVersion}, Zones: Zones, Images: images}, nil
}

// instanceView renders an instance as the SDK sees it.
func (c *Cloud) instanceView(s *state, in *instance) sdk.Instance {
	out := sdk.Instance{
		ID: in.ID, Name: in.Name, Zone: in.Zone, Image: in.Image, State: sdk.InstanceStopped,
		DiskID: "disk-" + in.ID, Labels: in.Labels, CreatedAt: in.CreatedAt,
	}
	if in.Running && alive(in.PID, in.ID) {
		out.State = sdk.InstanceRunning
	}
	if a := s.Addresses[in.PrivateAddressID]; a != nil {
		out.PrivateIP = a.IP
	}
	if a := s.Addresses[in.PublicAddressID]; a != nil {
		out.PublicIP = a.IP
	}
	return out
}

func (c *Cloud) getInstance(s *state, id string) (*instance, error) {
	in := s.Instances[id]
	if in == nil {
		return nil, fmt.Errorf("instance %q: %w", id, sdk.ErrNotFound)
	}
	return in, nil
}

// GetInstance implements sdk.Provider.
func (c *Cloud) GetInstance(ctx context.Context, id string) (out sdk.Instance, err error) {
	err = c.st.view(func(s *state) error {
		in, err := c.getInstance(s, id)
		if err == nil {
			out = c.instanceView(s, in)
		}
		return err
	})
	return out, err
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// ListInstances implements sdk.Provider.
func (c *Cloud) ListInstances(ctx context.Context, labels map[string]string) (out []sdk.Instance, err error) {
	err = c.st.view(func(s *state) error {
		for _, in := range s.Instances {
			if hasLabels(in.Labels, labels) {
				out = append(out, c.instanceView(s, in))
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// allocate reserves the next free address of a pool, or want if given.
func (c *Cloud) allocate(s *state, public bool, want string) (*address, error) {
	prefix := c.cfg.PrivatePrefix
	if public {
		prefix = c.cfg.PublicPrefix
	}
	used := map[string]bool{}
	for _, a := range s.Addresses {
		used[a.IP] = true
	}
	pick := want
	if pick != "" {
		if ip := net.ParseIP(pick); ip == nil || !inPool(prefix, pick) {
			return nil, fmt.Errorf("%w: private IP %q is not in the local cloud's pool %s.0/24", sdk.ErrInvalidArgument, want, prefix)
		}
		if used[pick] {
			return nil, fmt.Errorf("%w: private IP %s is in use", sdk.ErrFailedPrecondition, want)
		}
	} else {
		for i := 1; i < 254 && pick == ""; i++ { // .254 is the bridge
			if ip := fmt.Sprintf("%s.%d", prefix, i); !used[ip] {
				pick = ip
			}
		}
		if pick == "" {
			return nil, fmt.Errorf("%w: address pool %s.0/24 is exhausted", sdk.ErrQuota, prefix)
		}
	}
	a := &address{ID: s.newID("addr"), IP: pick, Public: public}
	s.Addresses[a.ID] = a
	return a, nil
}

// VMRequest creates a VM outside the plugin contract: the first node of a
// local cluster, with static private and public addresses.
type VMRequest struct {
	Name, Zone, Image string
	// SeedDir, if set, is copied into the new disk.
	SeedDir string
	Labels  map[string]string
	// Prepare, if set, runs once the VM has its addresses and disk and
	// before it boots, to write the disk for those addresses.
	Prepare func(inst sdk.Instance, disk string) error
}

// CreateVM creates and starts a VM with two static addresses (admin).
func (c *Cloud) CreateVM(ctx context.Context, req VMRequest) (inst sdk.Instance, err error) {
	if !slices.Contains(Zones, req.Zone) {
		return inst, fmt.Errorf("%w: zone %q (want one of %v)", sdk.ErrInvalidArgument, req.Zone, Zones)
	}
	var id string
	err = c.st.update(func(s *state) error {
		priv, err := c.allocate(s, false, "")
		if err != nil {
			return err
		}
		pub, err := c.allocate(s, true, "")
		if err != nil {
			return err
		}
		in := &instance{ID: s.newID("i"), Name: req.Name, Zone: req.Zone, Image: orNone(req.Image), PrivateAddressID: priv.ID, PublicAddressID: pub.ID, Labels: req.Labels, CreatedAt: time.Now().UTC()}
		priv.InstanceID, pub.InstanceID = in.ID, in.ID
		priv.Static, pub.Static = true, true
		s.Instances[in.ID] = in
		id = in.ID
		if req.SeedDir != "" {
			if err := copyTree(ctx, req.SeedDir, c.diskDir(in.ID)); err != nil {
				return err
			}
		}
		if err := c.makeDisks(in.ID); err != nil {
			return err
		}
		return c.startForwarder(s, pub)
	})
	if err != nil {
		return inst, err
	}
	if req.Prepare != nil {
		created, err := c.GetInstance(ctx, id)
		if err != nil {
			return inst, err
		}
		if err := req.Prepare(created, c.diskDir(id)); err != nil {
			return created, fmt.Errorf("preparing the disk of %s: %w", id, err)
		}
	}
	return c.StartInstance(ctx, id)
}

func orNone(image string) string {
	if image == "" {
		return NoneImage
	}
	return image
}

// CreateInstance implements sdk.Provider.
func (c *Cloud) CreateInstance(ctx context.Context, req sdk.CreateInstanceRequest) (out sdk.Instance, err error) {
	switch {
	case req.IdempotencyToken == "" || len(req.IdempotencyToken) > 64:
		return out, fmt.Errorf("%w: an idempotency token of 1 to 64 characters is required", sdk.ErrInvalidArgument)
	case !slices.Contains(Zones, req.Zone):
		return out, fmt.Errorf("%w: zone %q (want one of %v)", sdk.ErrInvalidArgument, req.Zone, Zones)
	case len(req.BootData) > sdk.MaxBootData:
		return out, fmt.Errorf("%w: boot data is %d bytes, at most %d", sdk.ErrInvalidArgument, len(req.BootData), sdk.MaxBootData)
	}
	var id string
	if err := c.fault("CreateInstance"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		if existing, ok := s.Tokens["instance/"+req.IdempotencyToken]; ok {
			id = existing
			return nil
		}
		snap := s.Snapshots[req.DiskSnapshotID]
		if snap == nil {
			return fmt.Errorf("disk snapshot %q: %w", req.DiskSnapshotID, sdk.ErrNotFound)
		}
		priv, err := c.allocate(s, false, req.PrivateIP)
		if err != nil {
			return err
		}
		image := req.Image
		if image == "" {
			image = snap.SourceImage
		}
		in := &instance{ID: s.newID("i"), Name: req.Name, Zone: req.Zone, Image: orNone(image), PrivateAddressID: priv.ID, Labels: req.Labels, CreatedAt: time.Now().UTC()}
		priv.InstanceID = in.ID
		if err := c.disksFromSnapshot(ctx, snap.ID, in.ID); err != nil {
			return fmt.Errorf("creating disks from %s: %w", snap.ID, err)
		}
		if len(req.BootData) > 0 {
			if err := atomicfile.Write(filepath.Join(c.diskDir(in.ID), BootDataPath), req.BootData, 0o600); err != nil {
				return err
			}
		}
		s.Instances[in.ID] = in
		s.Tokens["instance/"+req.IdempotencyToken] = in.ID
		id = in.ID
		return nil
	})
	if err != nil {
		return out, err
	}
	return c.StartInstance(ctx, id)
}

// BootDataPath is where a VM's boot data lands on its disk, where
// triad-agent --boot-data reads it.
const BootDataPath = "var/lib/triad-agent/boot-data.json"

// StartInstance implements sdk.Provider.
func (c *Cloud) StartInstance(ctx context.Context, id string) (out sdk.Instance, err error) {
	if err := c.fault("StartInstance"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		in, err := c.getInstance(s, id)
		if err != nil {
			return err
		}
		if in.PrivateAddressID == "" {
			return fmt.Errorf("%w: instance %s has no private address; attach one first", sdk.ErrFailedPrecondition, id)
		}
		if !(in.Running && alive(in.PID, in.ID)) {
			if a := s.Addresses[in.PrivateAddressID]; a != nil {
				// Left on the bridge by a load balancer that was killed.
				removeHostAddress(c.cfg.network(), a.IP)
			}
			pid, err := spawnIn(c.cfg.Binary, []string{"vm", "--state-dir", c.cfg.StateDir, "--id", in.ID}, filepath.Join(c.vmDir(in.ID), "supervisor.log"),
				syscall.CLONE_NEWNET|syscall.CLONE_NEWNS|syscall.CLONE_NEWUTS)
			if err != nil {
				return err
			}
			if err := attachVM(c.cfg.network(), vethName(c.cfg.StateDir, in.ID), vmMAC(c.cfg.StateDir, in.ID), pid); err != nil {
				killSession(pid)
				return err
			}
			in.PID, in.Running = pid, true
		}
		out = c.instanceView(s, in)
		return nil
	})
	if err == nil {
		out.State = sdk.InstanceRunning
	}
	return out, err
}

// StopInstance implements sdk.Provider: the supervisor stops the VM's
// processes (SIGTERM, then SIGKILL after a grace period).
func (c *Cloud) StopInstance(ctx context.Context, id string) (out sdk.Instance, err error) {
	if err := c.fault("StopInstance"); err != nil {
		return out, err
	}
	err = c.st.update(func(s *state) error {
		in, err := c.getInstance(s, id)
		if err != nil {
			return err
		}
		s.later(stopLater(in.PID, in.ID, 15*time.Second))
		in.Running, in.PID = false, 0
		out = c.instanceView(s, in)
		return nil
	})
	return out, err
}

// DeleteInstance implements sdk.Provider. Addresses allocated with the
// instance go with it; static addresses attached to it are released.
func (c *Cloud) DeleteInstance(ctx context.Context, id string) error {
	if err := c.fault("DeleteInstance"); err != nil {
		return err
	}
	return c.st.update(func(s *state) error {
		in := s.Instances[id]
		if in == nil {
			return nil
		}
		vmDir := c.vmDir(id)
		s.later(func() {
			stopGroup(in.PID, in.ID, 15*time.Second)
			c.keepConsoleLogs(id)
			os.RemoveAll(vmDir)
		})
		for _, aid := range []string{in.PrivateAddressID, in.PublicAddressID} {
			if a := s.Addresses[aid]; a != nil {
				s.later(stopLater(a.ForwarderPID, a.ID, 5*time.Second))
				a.InstanceID, a.ForwarderPID = "", 0
				if !a.Static {
					delete(s.Addresses, aid)
				}
			}
		}
		for _, lb := range s.LoadBalancers {
			lb.Backends = slices.DeleteFunc(lb.Backends, func(b string) bool { return b == id })
		}
		delete(s.Instances, id)
		for k, v := range s.Tokens {
			if v == id {
				delete(s.Tokens, k)
			}
		}
		return nil
	})
}

func copyTree(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("%w: %s exists", sdk.ErrAlreadyExists, dst)
	}
	// cp keeps modes, symlinks and times, and reflinks when it can.
	cmd := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src+"/.", dst)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dst)
		return fmt.Errorf("copying %s: %v: %s", src, err, out)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// disksFromSnapshot gives instance id copies of both disks of snapshot
// snap.
func (c *Cloud) disksFromSnapshot(ctx context.Context, snap, id string) error {
	if err := copyTree(ctx, filepath.Join(c.snapshotDir(snap), "root"), c.rootDisk(id)); err != nil {
		return err
	}
	return copyTree(ctx, filepath.Join(c.snapshotDir(snap), "data"), c.dataDisk(id))
}
