// Package cli is the triad command line: it parses flags, calls the
// coordinator's packages and prints results as text or JSON. It holds no
// logic of its own beyond presentation.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// Version is the triad build version, set at link time.
var Version = "dev"

// globals are the flags every command shares.
type globals struct {
	output string
	pkiDir string
}

// NewRootCommand builds the triad command tree.
func NewRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "triad",
		Short: "Turn a single-node Kubernetes control plane into a highly available one, and upgrade it node by node",
		Long: `triad is the coordinator of triad: it plans and runs operations on
self-managed Kubernetes control planes by sequencing the triad-agent on each
control-plane VM and a cloud plugin.

  migrate   single node -> 3 nodes behind load balancers on the old IPs,
            with automatic rollback before the point of no return
  status    the control plane's health from its agents (etcd members,
            leader, gates, static pods, versions)
  upgrade   replace the HA control plane's nodes one by one with VMs of a
            new image, under live load, rolling a failed node back
  monitor   measure availability during maintenance triad does not drive
  pki       triad's own CA and the certificates of agents, coordinators
            and observers
  agent     talk to one triad-agent directly (info, health, gate)
  local     the embedded local cloud (cluster create, join-worker, vm,
            lb, down)

Start with 'triad pki init', then 'triad pki issue' a certificate for each
cluster's agents and one for this coordinator; describe the cluster in a
cluster.yaml and run 'triad migrate plan -f cluster.yaml'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&g.pkiDir, "pki-dir", defaultPKIDir(), "directory of triad's CA and certificates")
	root.AddCommand(newMigrateCommand(g), newUpgradeCommand(g), newStatusCommand(g), newPKICommand(g), newAgentCommand(g), newLocalCommand(g))
	root.AddCommand(newMonitorCommand(g))
	return root
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := NewRootCommand()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func defaultPKIDir() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "triad", "pki")
	}
	return filepath.Join(".triad", "pki")
}

// print writes v as JSON, or calls text for the text format.
func (g *globals) print(w io.Writer, v any, text func(io.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "text":
		text(w)
		return nil
	default:
		return fmt.Errorf("unknown output format %q (want text or json)", g.output)
	}
}
