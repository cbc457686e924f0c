package cri

import (
	"context"
	"os"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Stats come from /proc: a container's processes are its process group and
// the descendants of its process. CPU is utime+stime; memory is the
// resident set (working set = RSS: there is no cgroup to tell page cache
// apart). Nano-cores come from the previous sample of the same container.

const clockTicks = 100 // USER_HZ on Linux

type cpuSample struct {
	at    time.Time
	nanos uint64
}

type usage struct {
	cpuNanos uint64
	rss      uint64
	procs    uint64
}

// processTable reads every process's stat once.
func processTable() map[int]procStat {
	out := map[int]procStat{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			out[pid] = st
		}
	}
	return out
}

// usageOf sums the processes of the container whose process is pid.
func usageOf(table map[int]procStat, pid int, start uint64) usage {
	var u usage
	if st, ok := table[pid]; !ok || (start != 0 && st.startTime != start) {
		return u
	}
	children := map[int][]int{}
	for p, st := range table {
		children[st.ppid] = append(children[st.ppid], p)
	}
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	for p, st := range table {
		if st.pgrp == pid {
			walk(p)
		}
	}
	page := uint64(os.Getpagesize())
	for p := range seen {
		st := table[p]
		u.cpuNanos += st.cpuTicks * (1e9 / clockTicks)
		u.rss += st.rssPages * page
		u.procs++
	}
	return u
}

// containerStats are c's stats; callers hold s.mu.
func (s *Server) containerStats(c *container, table map[int]procStat) *runtimeapi.ContainerStats {
	now := time.Now()
	var u usage
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		u = usageOf(table, c.Pid, c.PidStart)
	}
	cpu := &runtimeapi.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.cpuNanos}}
	if prev, ok := s.stats[c.ID]; ok && now.After(prev.at) && u.cpuNanos >= prev.nanos {
		cpu.UsageNanoCores = &runtimeapi.UInt64Value{Value: uint64(float64(u.cpuNanos-prev.nanos) / now.Sub(prev.at).Seconds())}
	} else {
		cpu.UsageNanoCores = &runtimeapi.UInt64Value{}
	}
	s.stats[c.ID] = cpuSample{at: now, nanos: u.cpuNanos}
	fs, _ := fsUsage(s.cfg.StateDir)
	var layer *runtimeapi.FilesystemUsage
	if fs != nil {
		layer = &runtimeapi.FilesystemUsage{Timestamp: fs.Timestamp, FsId: fs.FsId, UsedBytes: &runtimeapi.UInt64Value{}, InodesUsed: &runtimeapi.UInt64Value{}}
	}
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations()},
		Cpu:        cpu,
		Memory: &runtimeapi.MemoryUsage{Timestamp: now.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.rss},
			RssBytes: &runtimeapi.UInt64Value{Value: u.rss}, UsageBytes: &runtimeapi.UInt64Value{Value: u.rss},
			PageFaults: &runtimeapi.UInt64Value{}, MajorPageFaults: &runtimeapi.UInt64Value{}},
		WritableLayer: layer,
	}
}

func (r *runtimeService) ContainerStats(_ context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	s := r.s
	table := processTable()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := lookup(s.containers, req.GetContainerId(), "container")
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(c, table)}, nil
}

func (r *runtimeService) ListContainerStats(_ context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	s := r.s
	table := processTable()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	out := []*runtimeapi.ContainerStats{}
	for _, c := range s.containers {
		// Like containerd, only running containers have stats worth reporting.
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING ||
			(f.GetId() != "" && f.GetId() != c.ID) || (f.GetPodSandboxId() != "" && f.GetPodSandboxId() != c.SandboxID) ||
			!labelsMatch(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, s.containerStats(c, table))
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

// sandboxStats sums its running containers; callers hold s.mu.
func (s *Server) sandboxStats(sb *sandbox, table map[int]procStat) *runtimeapi.PodSandboxStats {
	now := time.Now().UnixNano()
	var cpu, nanoCores, mem, procs uint64
	var cs []*runtimeapi.ContainerStats
	for _, c := range s.sandboxContainers(sb.ID) {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		st := s.containerStats(c, table)
		cs = append(cs, st)
		cpu += st.Cpu.UsageCoreNanoSeconds.Value
		nanoCores += st.Cpu.UsageNanoCores.GetValue()
		mem += st.Memory.WorkingSetBytes.Value
		procs += usageOf(table, c.Pid, c.PidStart).procs
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: sb.ID, Metadata: sb.Config.GetMetadata(), Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations()},
		Linux: &runtimeapi.LinuxPodSandboxStats{
			Cpu: &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu}, UsageNanoCores: &runtimeapi.UInt64Value{Value: nanoCores}},
			Memory: &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem}, RssBytes: &runtimeapi.UInt64Value{Value: mem},
				UsageBytes: &runtimeapi.UInt64Value{Value: mem}, PageFaults: &runtimeapi.UInt64Value{}, MajorPageFaults: &runtimeapi.UInt64Value{}},
			Process:    &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: procs}},
			Containers: cs,
		},
	}
}

func (r *runtimeService) PodSandboxStats(_ context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	s := r.s
	table := processTable()
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, err := lookup(s.sandboxes, req.GetPodSandboxId(), "pod sandbox")
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.sandboxStats(sb, table)}, nil
}

func (r *runtimeService) ListPodSandboxStats(_ context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	s := r.s
	table := processTable()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.GetFilter()
	out := []*runtimeapi.PodSandboxStats{}
	for _, sb := range s.sandboxes {
		if sb.State != runtimeapi.PodSandboxState_SANDBOX_READY || (f.GetId() != "" && f.GetId() != sb.ID) || !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, s.sandboxStats(sb, table))
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

// ListMetricDescriptors and ListPodSandboxMetrics (the kubelet calls them
// only with the PodAndContainerStatsFromCRI gate) report no metrics.
func (r *runtimeService) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{}, nil
}

func (r *runtimeService) ListPodSandboxMetrics(context.Context, *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{}, nil
}
