package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/cloudplugins/local"
)

func newLocalCommand(g *globals) *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Manage the embedded local cloud (VMs and load balancers on this machine)",
		Long: `The local cloud is triad's default cloud plugin: a VM is a directory plus
processes on its own 127.0.0.0/8 address, a load balancer is a TCP proxy that
health-checks each VM's agent gate. Its VMs and load balancers are long-lived
processes that outlive every triad command; 'triad local down' removes them.`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", "", "local cloud state directory (default $XDG_STATE_HOME/triad/localcloud)")
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop every VM, load balancer and forwarder of the local cloud and delete its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cloud, err := local.New(local.Config{StateDir: stateDir})
			if err != nil {
				return err
			}
			dir := cloud.StateDir()
			if err := cloud.Down(); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"removed": dir}, func(w io.Writer) {
				fmt.Fprintf(w, "local cloud in %s is down: no VM, load balancer or forwarder left\n", dir)
			})
		},
	}
	cmd.AddCommand(down)
	return cmd
}
