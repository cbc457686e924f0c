package local

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Ways into a running VM from the host, for 'triad local vm shell', tests
// and tools: a VM is a set of namespaces whose first process is its
// supervisor.

// vmPID returns the pid of running instance id's supervisor.
func (c *Cloud) vmPID(id string) (int, error) {
	var pid int
	err := c.st.view(func(s *state) error {
		in, err := c.getInstance(s, id)
		if err != nil {
			return err
		}
		if !in.Running || !alive(in.PID, in.ID) {
			return fmt.Errorf("%w: instance %s is not running", sdk.ErrFailedPrecondition, id)
		}
		pid = in.PID
		return nil
	})
	return pid, err
}

// VMPath returns a host path for path inside running VM id, resolved in
// the VM's mount namespace (/proc/<pid>/root): its /run, or a unix socket
// whose own path would be too long.
func (c *Cloud) VMPath(id, path string) (string, error) {
	pid, err := c.vmPID(id)
	if err != nil {
		return "", err
	}
	return filepath.Join("/proc", strconv.Itoa(pid), "root", path), nil
}

// ListenInVM listens on addr inside running VM id's network namespace, as a
// process of the VM would (tests serve stand-in backends this way). A VM
// just created may still be configuring its address: it retries for 10 s.
func (c *Cloud) ListenInVM(id, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := c.inVMNetwork(id, func() (err error) {
		for deadline := time.Now().Add(10 * time.Second); ; {
			l, err = net.Listen(network, addr)
			if !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return l, err
}

// DialInVM connects to addr from inside running VM id's network namespace,
// as a process of the VM would.
func (c *Cloud) DialInVM(id, network, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := c.inVMNetwork(id, func() (err error) {
		conn, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return conn, err
}

// inVMNetwork runs f on an OS thread inside VM id's network namespace:
// sockets f makes stay in that namespace.
func (c *Cloud) inVMNetwork(id string, f func() error) error {
	pid, err := c.vmPID(id)
	if err != nil {
		return err
	}
	target, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("network namespace of %s: %w", id, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the network namespace of %s: %w", id, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// This thread stays in the VM's namespace: never reuse it (the
		// runtime ends a locked thread when its goroutine exits).
		return ferr
	}
	runtime.UnlockOSThread()
	return ferr
}

// Command returns a command that runs argv inside running VM id: in its
// network, mount and UTS namespaces, through nsenter (util-linux), with the
// VM's root as working directory.
func (c *Cloud) Command(id string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: no command", sdk.ErrInvalidArgument)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("entering a VM needs nsenter (util-linux): %w", err)
	}
	pid, err := c.vmPID(id)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-n", "-m", "-u", "--wdns=/", "--"}, argv...)
	return exec.Command(nsenter, args...), nil
}
