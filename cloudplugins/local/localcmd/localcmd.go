// Package localcmd is the command line of triad-cloud-local: the plugin
// server by default, or one of the local cloud's long-lived processes.
package localcmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

const usage = `triad-cloud-local is triad's embedded default cloud. triad starts it as a
plugin; there is nothing to run by hand. The local cloud starts it again
with one of these roles for its long-lived processes:

  vm      --state-dir DIR --id INSTANCE      supervise a VM's processes
  lb      --state-dir DIR --id LOADBALANCER  run a load balancer
  forward --state-dir DIR --id ADDRESS --ports 6443,...  forward a public address

and, inside a VM (processes of its image):

  cri --socket PATH --state-dir DIR --images FILE
          the VM's container runtime: serves CRI to the kubelet and runs
          containers as processes; FILE maps image references to binaries
  placeholder
          what a container whose image is not built here runs: stays up and
          answers HTTP on its ports
`

// Main runs the command with args (without the program name).
func Main(args []string) error {
	if len(args) == 0 {
		if os.Getenv(sdk.Handshake.MagicCookieKey) == "" {
			fmt.Fprint(os.Stderr, usage)
			return fmt.Errorf("not started by triad")
		}
		var cfg local.Config
		if raw := sdk.Config(); len(raw) > 0 {
			if err := json.Unmarshal(raw, &cfg); err != nil {
				return fmt.Errorf("plugin configuration: %w", err)
			}
		}
		cloud, err := local.New(cfg)
		if err != nil {
			return err
		}
		sdk.Serve(cloud)
		return nil
	}
	role := args[0]
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "local cloud state directory")
	id := fs.String("id", "", "resource id")
	ports := fs.String("ports", "", "ports to forward")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *stateDir == "" || *id == "" {
		return fmt.Errorf("%s needs --state-dir and --id\n%s", role, usage)
	}
	cloud, err := local.Open(*stateDir)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("role", role, "id", *id)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch role {
	case "vm":
		return cloud.RunVM(ctx, *id, log)
	case "lb":
		return cloud.RunLB(ctx, *id, log)
	case "forward":
		var ps []int
		for _, p := range strings.Split(*ports, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				return fmt.Errorf("--ports %q: %w", *ports, err)
			}
			ps = append(ps, n)
		}
		return cloud.RunForwarder(ctx, *id, ps, log)
	}
	return fmt.Errorf("unknown role %q\n%s", role, usage)
}
