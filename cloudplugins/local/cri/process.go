package cri

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// container is the record of a container.
type container struct {
	ID        string                      `json:"id"`
	SandboxID string                      `json:"sandboxId"`
	Config    *runtimeapi.ContainerConfig `json:"config"`
	// Image is the reference the pod names; ImageID the image's id (what
	// the kubelet passes back as the config's image).
	Image   string `json:"image"`
	ImageID string `json:"imageId"`
	LogPath string `json:"logPath,omitempty"`

	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	// Binds are the non-identity mounts, bound in the container's own mount
	// namespace.
	Binds []*runtimeapi.Mount `json:"binds,omitempty"`

	State      runtimeapi.ContainerState `json:"state"`
	CreatedAt  int64                     `json:"createdAt"`
	StartedAt  int64                     `json:"startedAt,omitempty"`
	FinishedAt int64                     `json:"finishedAt,omitempty"`
	ExitCode   int32                     `json:"exitCode"`
	Reason     string                    `json:"reason,omitempty"`
	Message    string                    `json:"message,omitempty"`
	// Pid and PidStart (the process's start time in clock ticks since boot)
	// identify the process across runtime restarts despite pid reuse.
	Pid      int    `json:"pid,omitempty"`
	PidStart uint64 `json:"pidStart,omitempty"`

	done    chan struct{} // closed when the container is not running
	log     *logFile
	readers []*os.File
	logsEOF sync.WaitGroup
}

func (c *container) closeReaders() {
	for _, r := range c.readers {
		r.Close()
	}
	c.readers = nil
}

func (s *Server) pipePath(id, stream string) string {
	return filepath.Join(s.cfg.StateDir, "pipes", id+"."+stream)
}

// start runs c's process; callers hold s.mu.
func (s *Server) start(c *container) error {
	if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil && c.LogPath != "" {
		return fmt.Errorf("log directory: %w", err)
	}
	var child []*os.File
	defer func() {
		for _, f := range child {
			f.Close()
		}
	}()
	var readers []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		p := s.pipePath(c.ID, stream)
		os.Remove(p)
		if err := unix.Mkfifo(p, 0o600); err != nil {
			return fmt.Errorf("log pipe %s: %w", p, err)
		}
		r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("log pipe %s: %w", p, err)
		}
		readers = append(readers, r)
		// The process holds its end read-write: with a reader always open
		// (itself), it never gets SIGPIPE while no runtime reads.
		w, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			for _, r := range readers {
				r.Close()
			}
			return fmt.Errorf("log pipe %s: %w", p, err)
		}
		child = append(child, w)
	}
	path, err := lookPath(c.Argv[0], c.Env)
	if err != nil {
		for _, r := range readers {
			r.Close()
		}
		return err
	}
	cmd := &exec.Cmd{Path: path, Args: c.Argv, Env: c.Env, Dir: c.Dir, Stdout: child[0], Stderr: child[1],
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if len(c.Binds) > 0 {
		err = startInNewMountNS(cmd, c.Binds)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		for _, r := range readers {
			r.Close()
		}
		return fmt.Errorf("starting %v: %w", c.Argv, err)
	}
	c.Pid = cmd.Process.Pid
	c.PidStart, _ = procStartTime(c.Pid)
	c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
	c.StartedAt = time.Now().UnixNano()
	s.readLogs(c, readers)
	s.save("containers", c.ID, c)
	go func() {
		err := cmd.Wait()
		code, reason := int32(0), "Completed"
		if ps := cmd.ProcessState; ps != nil {
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int32(ws.Signal())
			} else {
				code = int32(ps.ExitCode())
			}
		} else if err != nil {
			code = 255
		}
		if code != 0 {
			reason = "Error"
		}
		s.exited(c, code, reason, "")
	}()
	return nil
}

// adopt watches a running container a previous runtime started; callers
// hold s.mu (or own s alone, while loading).
func (s *Server) adopt(c *container) {
	if !alive(c.Pid, c.PidStart) {
		s.finish(c, 255, "Unknown", "the container exited while no runtime watched it")
		close(c.done)
		return
	}
	var readers []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		if r, err := os.OpenFile(s.pipePath(c.ID, stream), os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			readers = append(readers, r)
		} else {
			s.cfg.Logger.Warn("re-attaching a container's log", "container", c.ID, "err", err)
			readers = append(readers, nil)
		}
	}
	s.readLogs(c, readers)
	go func() {
		for alive(c.Pid, c.PidStart) {
			time.Sleep(250 * time.Millisecond)
		}
		s.exited(c, 255, "Unknown", "the container was re-adopted after a runtime restart: its exit code is unknown")
	}()
}

// exited records that c's process has gone, once its logs are drained (for
// a bounded time: a descendant that left its process group may hold the
// pipes).
func (s *Server) exited(c *container, code int32, reason, message string) {
	if c.Pid > 0 {
		syscall.Kill(-c.Pid, syscall.SIGKILL) // the rest of its process group, as a runtime kills the container's cgroup
	}
	logs := make(chan struct{})
	go func() { c.logsEOF.Wait(); close(logs) }()
	select {
	case <-logs:
	case <-time.After(2 * time.Second):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.closeReaders()
	s.finish(c, code, reason, message)
	close(c.done)
}

func (s *Server) finish(c *container, code int32, reason, message string) {
	c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	c.FinishedAt = time.Now().UnixNano()
	c.ExitCode, c.Reason, c.Message = code, reason, message
	s.save("containers", c.ID, c)
}

// stop stops c: SIGTERM to its process group, SIGKILL after timeout.
// Callers do not hold s.mu.
func (s *Server) stop(c *container, timeout time.Duration) {
	s.mu.Lock()
	pid, start, running := c.Pid, c.PidStart, c.State == runtimeapi.ContainerState_CONTAINER_RUNNING
	s.mu.Unlock()
	if !running {
		return
	}
	// SIGTERM goes to the container's main process alone, once, as a
	// container runtime signals a container's init: a second SIGTERM makes
	// kube-apiserver (and every component using k8s.io/apiserver's signal
	// handler) exit at once, skipping its graceful shutdown, and would drop
	// the requests in flight on its connections. SIGKILL takes the whole
	// process group, as the end of a PID namespace does.
	signal := func(sig syscall.Signal) {
		if alive(pid, start) { // not a reused pid
			signalContainer(syscall.Kill, pid, sig)
		}
	}
	if timeout > 0 {
		signal(syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(timeout):
		}
	}
	signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		s.cfg.Logger.Error("a killed container did not exit", "container", c.ID, "pid", pid)
	}
}

// signalContainer sends sig to the container whose main process is pid
// (the leader of its own process group): SIGKILL to the group and the
// process, any other signal to the process alone, exactly once.
func signalContainer(kill func(int, syscall.Signal) error, pid int, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		kill(-pid, sig)
	}
	kill(pid, sig)
}

// readLogs copies the process's output into its CRI log file.
func (s *Server) readLogs(c *container, readers []*os.File) {
	if c.log == nil {
		c.log = &logFile{path: c.LogPath}
		if err := c.log.reopen(); err != nil {
			s.cfg.Logger.Error("opening a container log", "container", c.ID, "path", c.LogPath, "err", err)
		}
	}
	for i, r := range readers {
		if r == nil {
			continue
		}
		c.readers = append(c.readers, r)
		stream := []string{"stdout", "stderr"}[i]
		c.logsEOF.Add(1)
		go func() {
			defer c.logsEOF.Done()
			c.log.copy(stream, r)
		}()
	}
}

// logFile writes the CRI log format: "<RFC3339Nano> <stream> <F|P> <line>".
type logFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// maxLogLine is where a line is cut into partial (P) entries, as
// containerd does.
const maxLogLine = 16 * 1024

func (l *logFile) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.f = f
	return nil
}

func (l *logFile) write(stream string, partial bool, line []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	var b bytes.Buffer
	b.WriteString(time.Now().Format(time.RFC3339Nano))
	b.WriteString(" " + stream + " " + tag + " ")
	b.Write(line)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Write(b.Bytes())
	}
}

func (l *logFile) copy(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			l.write(stream, true, line)
			continue
		case len(line) > 0 && line[len(line)-1] == '\n':
			l.write(stream, false, line[:len(line)-1])
		case len(line) > 0:
			l.write(stream, false, line)
		}
		if err != nil {
			return
		}
	}
}

// lookPath resolves argv[0] against the container's PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q not found in PATH %s", name, path)
}

// startInNewMountNS starts cmd in a mount namespace of its own holding the
// bind mounts. It unshares the namespace on a locked OS thread, which the
// process is forked from and which then ends with its goroutine (it is
// never unlocked, so the Go runtime never reuses it).
func startInNewMountNS(cmd *exec.Cmd, binds []*runtimeapi.Mount) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unsharing the mount namespace: %w", err)
			return
		}
		// Slave: the VM's later mounts still show, the container's stay its own.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			errc <- fmt.Errorf("making mounts slave: %w", err)
			return
		}
		for _, m := range binds {
			if err := bind(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func bind(m *runtimeapi.Mount) error {
	st, err := os.Stat(m.HostPath)
	if err != nil {
		return fmt.Errorf("mount source: %w", err)
	}
	if _, err := os.Lstat(m.ContainerPath); errors.Is(err, os.ErrNotExist) {
		if st.IsDir() {
			err = os.MkdirAll(m.ContainerPath, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(m.ContainerPath), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(m.ContainerPath, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				f.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("creating mount point %s: %w", m.ContainerPath, err)
		}
	}
	if err := unix.Mount(m.HostPath, m.ContainerPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding %s at %s: %w", m.HostPath, m.ContainerPath, err)
	}
	if m.Readonly {
		if err := unix.Mount("", m.ContainerPath, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", m.ContainerPath, err)
		}
	}
	return nil
}

// startInMountNSOf starts cmd in the mount namespace of process pid, from a
// locked OS thread that joins it (see startInNewMountNS).
func startInMountNSOf(cmd *exec.Cmd, pid int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unsharing filesystem attributes: %w", err)
			return
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("joining the mount namespace of %d: %w", pid, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// procStat is what the runtime reads of /proc/<pid>/stat.
type procStat struct {
	state      byte
	ppid, pgrp int
	cpuTicks   uint64 // utime + stime
	startTime  uint64
	rssPages   uint64
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 of proc(5).
	n := func(field int) uint64 { v, _ := strconv.ParseUint(f[field-3], 10, 64); return v }
	return procStat{state: f[0][0], ppid: int(n(4)), pgrp: int(n(5)), cpuTicks: n(14) + n(15), startTime: n(22), rssPages: n(24)}, nil
}

func procStartTime(pid int) (uint64, error) {
	st, err := readProcStat(pid)
	return st.startTime, err
}

// alive reports whether pid is still the process that started at start
// (a zombie, which nobody may ever reap, is not alive).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readProcStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X' && (start == 0 || st.startTime == start)
}
