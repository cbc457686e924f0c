package local

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The local cloud's long-lived processes (VM supervisors, load balancers,
// address forwarders) are the triad-cloud-local binary re-executed with a
// role and an id. They run in their own session, so they outlive the plugin
// process and the triad invocation that started them.

// spawn starts binary with args, detached, logging to logPath, and returns
// its pid. The child is reaped by a goroutine while this process lives.
func spawn(binary string, args []string, logPath string) (int, error) {
	return spawnIn(binary, args, logPath, 0)
}

// spawnIn is spawn with the child in new namespaces (CLONE_NEW* flags).
func spawnIn(binary string, args []string, logPath string, cloneflags uintptr) (int, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s %v: %w", binary, args, err)
	}
	go cmd.Wait() //nolint:errcheck // reaping only
	return cmd.Process.Pid, nil
}

// alive reports whether pid runs and is the process started with marker
// as its program or among its arguments (pids are reused).
func alive(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte("\x00"+marker+"\x00")) || bytes.HasSuffix(cmdline, []byte("\x00"+marker)) ||
		bytes.HasPrefix(cmdline, []byte(marker+"\x00"))
}

// sessionMembers lists the live processes of session sid. A long-lived
// process of the local cloud leads its own session (Setsid), and everything
// it starts stays in that session even in other process groups (the
// container runtime gives each container its own group), so a session is
// everything a VM runs.
func sessionMembers(sid int) []int {
	var pids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		// After the command: state ppid pgrp session ...
		fields := strings.Fields(string(data[i+1:]))
		if len(fields) < 4 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if s, err := strconv.Atoi(fields[3]); err == nil && s == sid {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// stopGroup stops the session led by pid: SIGTERM to its process group
// (the supervisor and what it runs directly, which stop their own
// children), then, after grace, SIGKILL to every process left in the
// session: a cloud's ACPI shutdown followed by power off.
func stopGroup(pid int, marker string, grace time.Duration) {
	if !alive(pid, marker) {
		return
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	// Then, as an init system's last stage does, every process left (the
	// containers, which a container runtime leaves running when it stops,
	// have process groups of their own), once the services had a moment.
	straggle := time.Now().Add(min(grace/3, 3*time.Second))
	for time.Now().Before(deadline) && len(sessionMembers(pid)) > 0 {
		if !straggle.IsZero() && time.Now().After(straggle) {
			for _, m := range sessionMembers(pid) {
				// Once each: the first group had its SIGTERM, and a
				// second makes a Kubernetes component exit at once.
				if pg, err := syscall.Getpgid(m); err == nil && pg != pid {
					syscall.Kill(m, syscall.SIGTERM)
				}
			}
			straggle = time.Time{}
		}
		time.Sleep(20 * time.Millisecond)
	}
	killSession(pid)
}

// killGroup SIGKILLs every process of pid's session at once: a VM losing
// power.
func killGroup(pid int, marker string) {
	if alive(pid, marker) {
		killSession(pid)
	}
}

func killSession(sid int) {
	for i := 0; i < 100; i++ {
		members := sessionMembers(sid)
		if len(members) == 0 {
			return
		}
		for _, m := range members {
			syscall.Kill(m, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopLater binds stopGroup's arguments now, for state.later.
func stopLater(pid int, marker string, grace time.Duration) func() {
	return func() { stopGroup(pid, marker, grace) }
}
