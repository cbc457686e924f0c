package localcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// WorkerOptions describe a worker VM that joins a cluster with 'kubeadm
// join', as an operator adds a node: a bootstrap token made on a
// control-plane node, discovery through the address the join command names.
type WorkerOptions struct {
	// Cluster is the cluster's name; the VM is labelled with it.
	Cluster string
	// Name is the VM's hostname and so its Node's name.
	Name string
	// Zone of the VM; local-a by default.
	Zone string
	// KubernetesVersion selects the worker image (the cluster's release).
	KubernetesVersion string
	// BinDir holds kubeadm (hack/build-k8s.sh).
	BinDir string
	// ControlPlane is the instance 'kubeadm token create' runs on.
	ControlPlane string
	// Progress receives one line per step.
	Progress io.Writer
}

// WorkerLabel marks the local cloud's worker VMs with their cluster's name.
const WorkerLabel = "triad.dev/worker-of"

// Worker is a joined worker VM.
type Worker struct {
	Instance sdk.Instance
	// JoinCommand is what 'kubeadm token create --print-join-command'
	// printed on the control-plane node (the token in it is secret).
	JoinCommand string
	// APIServer is the address the join went through (host:port).
	APIServer string
}

// JoinWorker makes a bootstrap token on opts.ControlPlane, creates a worker
// VM and runs 'kubeadm join' in it. It returns once kubeadm join has: the
// kubelet has bootstrapped its client certificate and serves; its Node may
// not be Ready yet.
func JoinWorker(ctx context.Context, cloud *local.Cloud, opts WorkerOptions) (*Worker, error) {
	if opts.Zone == "" {
		opts.Zone = "local-a"
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	step := func(format string, args ...any) { fmt.Fprintf(opts.Progress, "  "+format+"\n", args...) }
	kubeadm := filepath.Join(opts.BinDir, "kubeadm")
	if _, err := os.Stat(kubeadm); err != nil {
		return nil, fmt.Errorf("kubeadm missing in %s (run 'make k8s-binaries'): %w", opts.BinDir, err)
	}
	image := WorkerImageName(opts.KubernetesVersion)
	if _, err := cloud.Image(image); err != nil {
		return nil, fmt.Errorf("worker image for %s: %w", opts.KubernetesVersion, err)
	}
	step("kubeadm token create --print-join-command (inside %s)", opts.ControlPlane)
	out, err := runIn(ctx, cloud, opts.ControlPlane, opts.BinDir, "", kubeadm, "token", "create", "--print-join-command", "--ttl", "1h")
	if err != nil {
		return nil, fmt.Errorf("kubeadm token create on %s: %w", opts.ControlPlane, err)
	}
	join, apiserver, err := parseJoinCommand(out)
	if err != nil {
		return nil, err
	}
	inst, err := cloud.CreateVM(ctx, local.VMRequest{Name: opts.Name, Zone: opts.Zone, Image: image, Labels: map[string]string{WorkerLabel: opts.Cluster}})
	if err != nil {
		return nil, err
	}
	step("worker VM %s (%s) on %s", inst.ID, opts.Name, inst.PrivateIP)
	if err := waitCRI(ctx, cloud, inst.ID); err != nil {
		return nil, err
	}
	step("kubeadm join %s (inside %s)", apiserver, inst.ID)
	argv := append([]string{kubeadm}, join[1:]...)
	argv = append(argv, "--cri-socket", "unix://"+local.CRISocket,
		"--ignore-preflight-errors", strings.Join(SkippedPreflightChecks, ","), "--v", "1")
	logPath := filepath.Join(filepath.Dir(filepath.Dir(cloud.DiskDir(inst.ID))), "kubeadm-join.log")
	if _, err := runIn(ctx, cloud, inst.ID, opts.BinDir, logPath, argv...); err != nil {
		return nil, fmt.Errorf("kubeadm join in %s: %w", inst.ID, err)
	}
	return &Worker{Instance: inst, JoinCommand: strings.Join(join, " "), APIServer: apiserver}, nil
}

// parseJoinCommand reads 'kubeadm join HOST:PORT --token … --discovery-
// token-ca-cert-hash …' from kubeadm's output.
func parseJoinCommand(out string) (argv []string, apiserver string, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 3 && f[0] == "kubeadm" && f[1] == "join" && !strings.HasPrefix(f[2], "-") {
			return f, f[2], nil
		}
	}
	return nil, "", fmt.Errorf("kubeadm printed no join command: %q", out)
}

// waitCRI waits for the VM's container runtime, as an operator waits for a
// node to boot: kubeadm's preflight fails without it.
func waitCRI(ctx context.Context, cloud *local.Cloud, id string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		sock, err := cloud.VMPath(id, local.CRISocket)
		if err == nil {
			if _, err = os.Stat(sock); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container runtime of %s never served %s: %w", id, local.CRISocket, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runIn runs argv inside VM id with kubeadm's environment and returns its
// standard output; logPath, if set, keeps both streams.
func runIn(ctx context.Context, cloud *local.Cloud, id, binDir, logPath string, argv ...string) (string, error) {
	cmd, err := cloud.Command(id, argv...)
	if err != nil {
		return "", err
	}
	cmd.Env = []string{"PATH=" + binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if logPath != "" {
		logf, err := os.Create(logPath)
		if err != nil {
			return "", err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, logf), io.MultiWriter(&stderr, logf)
	}
	if err := runContext(ctx, cmd); err != nil {
		tail := stderr.String()
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return stdout.String(), fmt.Errorf("%v: %w\n%s", argv[:min(len(argv), 3)], err, tail)
	}
	return stdout.String(), nil
}
