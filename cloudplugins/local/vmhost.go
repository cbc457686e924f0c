package local

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A VM's disks. On the host they are directories of the VM:
//
//	vms/<id>/disks/root   the root disk: what the VM writes under /etc and
//	                      /var (the upper layers of overlays on the host's
//	                      /etc and /var, whose files stand in for the
//	                      image's operating system)
//	vms/<id>/disks/data   the data disk, mounted at /var/lib/etcd
//	vms/<id>/run          the VM's /run, emptied at every boot (a tmpfs on
//	                      a real host)
//
// Inside the VM (its own mount namespace, set up by the supervisor at boot)
// they are where a kubeadm node has them: /etc/kubernetes,
// /var/lib/kubelet, /var/lib/triad-agent on the root disk, /var/lib/etcd on
// the data disk. Being separate mounts, a rename from one to the other fails
// with EXDEV, as it does on a node whose etcd has its own volume. The
// binaries the VM runs are the host's (the cache of built binaries), as if
// baked into the image.

// DataDiskMount is where a VM's data disk is mounted.
const DataDiskMount = "/var/lib/etcd"

// overlaid are the host directories a VM sees with its root disk on top.
var overlaid = []string{"/etc", "/var"}

func (c *Cloud) rootDisk(id string) string { return filepath.Join(c.vmDir(id), "disks", "root") }
func (c *Cloud) dataDisk(id string) string { return filepath.Join(c.vmDir(id), "disks", "data") }
func (c *Cloud) runDir(id string) string   { return filepath.Join(c.vmDir(id), "run") }

// makeDisks creates an empty root and data disk for instance id.
func (c *Cloud) makeDisks(id string) error {
	for _, d := range []string{c.rootDisk(id), c.dataDisk(id)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// checkStateDir refuses a state directory that a VM's own mounts would
// hide from the VM's supervisor.
func checkStateDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, m := range append(overlaid, "/run") {
		if abs == m || strings.HasPrefix(abs, m+"/") {
			return fmt.Errorf("the local cloud's state directory %s cannot be under %s: every VM mounts its own disks there", abs, m)
		}
	}
	return nil
}

// setupVMHost runs in a VM's supervisor, in its new mount and UTS
// namespaces, before any process of the VM starts: it mounts the disks and
// the VM's /run, gives the VM its hostname and, on its first boot, a
// machine id of its own (a clone keeps its source's, as a cloned disk does).
func (c *Cloud) setupVMHost(id, hostname, ip string) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the VM's mounts private: %w", err)
	}
	root, work := c.rootDisk(id), filepath.Join(c.vmDir(id), "work")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	for _, dir := range overlaid {
		upper, wdir := filepath.Join(root, dir), filepath.Join(work, dir)
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(wdir, 0o755); err != nil {
			return err
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", dir, upper, wdir)
		if err := syscall.Mount("overlay", dir, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mounting the root disk over %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(DataDiskMount, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount(c.dataDisk(id), DataDiskMount, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("mounting the data disk at %s: %w", DataDiskMount, err)
	}
	run := c.runDir(id)
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(run, "/run", "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("mounting the VM's /run: %w", err)
	}
	if err := ensureMachineID(filepath.Join(root, "etc", "machine-id")); err != nil {
		return err
	}
	if err := os.WriteFile("/etc/hostname", []byte(hostname+"\n"), 0o644); err != nil {
		return err
	}
	// As cloud-init writes them at every boot. The VM's resolver is its own
	// loopback, where nothing answers: a VM never sends a DNS query to the
	// host's resolver, or anywhere off this machine.
	hosts := fmt.Sprintf("127.0.0.1 localhost\n::1 localhost\n%s %s\n", ip, hostname)
	resolv := "# the local cloud has no DNS server: lookups fail at once\nnameserver 127.0.0.1\n"
	for path, data := range map[string]string{"/etc/hosts": hosts, "/etc/resolv.conf": resolv} {
		os.Remove(path) // it may be a symlink into the host's /run
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := syscall.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("setting the VM's hostname: %w", err)
	}
	return nil
}

// ensureMachineID writes a new machine id if the root disk has none, as
// systemd does on an image's first boot.
func ensureMachineID(path string) error {
	if data, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(data))) == 32 {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o444)
}

// MachineID returns instance id's /etc/machine-id ("" before its first
// boot).
func (c *Cloud) MachineID(id string) string {
	data, _ := os.ReadFile(filepath.Join(c.rootDisk(id), "etc", "machine-id"))
	return strings.TrimSpace(string(data))
}
