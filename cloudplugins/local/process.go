package local

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s %v: %w", binary, args, err)
	}
	go cmd.Wait() //nolint:errcheck // reaping only
	return cmd.Process.Pid, nil
}

// alive reports whether pid runs and is the process started with marker
// among its arguments (pids are reused).
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
	return bytes.Contains(cmdline, []byte("\x00"+marker+"\x00")) || bytes.HasSuffix(cmdline, []byte("\x00"+marker))
}

// stopGroup sends SIGTERM to pid's process group, waits up to grace for it
// to go, then SIGKILLs the group.
func stopGroup(pid int, marker string, grace time.Duration) {
	if !alive(pid, marker) {
		return
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid, marker) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid, marker); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// killGroup SIGKILLs pid's process group at once: a VM losing power.
func killGroup(pid int, marker string) {
	if alive(pid, marker) {
		syscall.Kill(-pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(pid, marker); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stopLater binds stopGroup's arguments now, for state.later.
func stopLater(pid int, marker string, grace time.Duration) func() {
	return func() { stopGroup(pid, marker, grace) }
}
