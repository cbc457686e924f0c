package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/cloudplugins/local"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// errNoLocalCloud says a state directory holds no local cloud.
var errNoLocalCloud = errors.New("no local cloud")

// openLocal opens the local cloud in stateDir (or the default one) without
// creating anything: looking at a cloud must not make one.
func openLocal(stateDir string) (*local.Cloud, error) {
	cfg, err := local.Config{StateDir: stateDir}.WithDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "config.json")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (create one with 'triad local cluster create', or pass --state-dir)", errNoLocalCloud, cfg.StateDir)
	}
	return local.Open(cfg.StateDir)
}

// findVM accepts an instance id or name.
func findVM(cloud *local.Cloud, cmd *cobra.Command, ref string) (sdk.Instance, error) {
	all, err := cloud.ListInstances(cmd.Context(), nil)
	if err != nil {
		return sdk.Instance{}, err
	}
	var names []string
	for _, in := range all {
		if in.ID == ref || in.Name == ref {
			return in, nil
		}
		names = append(names, in.ID+" ("+in.Name+")")
	}
	return sdk.Instance{}, fmt.Errorf("no VM %q in the local cloud; there are: %s", ref, strings.Join(names, ", "))
}

// vmView is a VM as 'triad local vm list' shows it.
type vmView struct {
	sdk.Instance
	MachineID string `json:"machineID,omitempty"`
	RootDisk  string `json:"rootDisk"`
	DataDisk  string `json:"dataDisk"`
}

func newLocalVMCommand(g *globals, stateDir *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Look at and poke the local cloud's VMs: list, stop, start, kill, shell",
		Long: `Each local VM is its own host: network, mount and UTS namespaces of its own,
one address on the local cloud's bridge, a root disk (what it writes under /etc
and /var) and a data disk (/var/lib/etcd). These commands act as a cloud
console would: stop is an ACPI shutdown (SIGTERM, then SIGKILL after 15 s),
kill is a power loss, start boots the VM again from its disks (a reboot).`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the VMs with their state, addresses, image, machine id and disks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cloud, err := openLocal(*stateDir)
			if err != nil {
				return err
			}
			all, err := cloud.ListInstances(cmd.Context(), nil)
			if err != nil {
				return err
			}
			views := make([]vmView, 0, len(all))
			for _, in := range all {
				views = append(views, vmView{Instance: in, MachineID: cloud.MachineID(in.ID), RootDisk: cloud.DiskDir(in.ID), DataDisk: cloud.DataDiskDir(in.ID)})
			}
			return g.print(cmd.OutOrStdout(), views, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tZONE\tSTATE\tPRIVATE\tPUBLIC\tIMAGE\tMACHINE-ID")
				for _, v := range views {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Name, v.Zone, v.State, dash(v.PrivateIP), dash(v.PublicIP), v.Image, dash(v.MachineID))
				}
				tw.Flush()
			})
		},
	}
	action := func(use, short string, do func(*local.Cloud, *cobra.Command, sdk.Instance) error, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " VM", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cloud, err := openLocal(*stateDir)
				if err != nil {
					return err
				}
				in, err := findVM(cloud, cmd, args[0])
				if err != nil {
					return err
				}
				if err := do(cloud, cmd, in); err != nil {
					return err
				}
				after, err := cloud.GetInstance(cmd.Context(), in.ID)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), after, func(w io.Writer) {
					fmt.Fprintf(w, "%s (%s) %s: now %s\n", after.ID, after.Name, done, after.State)
				})
			},
		}
	}
	stop := action("stop", "Shut a VM down (SIGTERM to its processes, SIGKILL after 15 s); its disks and addresses stay",
		func(c *local.Cloud, cmd *cobra.Command, in sdk.Instance) error {
			_, err := c.StopInstance(cmd.Context(), in.ID)
			return err
		}, "stopped")
	start := action("start", "Boot a stopped VM from its disks",
		func(c *local.Cloud, cmd *cobra.Command, in sdk.Instance) error {
			_, err := c.StartInstance(cmd.Context(), in.ID)
			return err
		}, "started")
	kill := action("kill", "Cut a VM's power: SIGKILL to every process at once (start boots it again)",
		func(c *local.Cloud, _ *cobra.Command, in sdk.Instance) error { return c.KillVM(in.ID) }, "killed")
	shell := &cobra.Command{
		Use:   "shell VM [-- COMMAND [ARG...]]",
		Short: "Open a shell (or run a command) inside a running VM's namespaces",
		Long: `Runs /bin/sh (or COMMAND) inside the VM: its network namespace (its own
127.0.0.1 and eth0), its mounts (/etc/kubernetes, /var/lib/kubelet, /var/lib/etcd
on its own disks) and its hostname. Needs nsenter (util-linux).

  triad local vm shell demo-cp-0
  triad local vm shell i-0003 -- ss -ltnp
  triad local vm shell i-0003 -- cat /etc/machine-id`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cloud, err := openLocal(*stateDir)
			if err != nil {
				return err
			}
			in, err := findVM(cloud, cmd, args[0])
			if err != nil {
				return err
			}
			argv := args[1:]
			if len(argv) == 0 {
				argv = []string{"/bin/sh"}
			}
			c, err := cloud.Command(in.ID, argv...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			c.Env = append(os.Environ(), "PS1="+in.Name+"# ")
			return c.Run()
		},
	}
	restart := &cobra.Command{
		Use:   "restart VM PROCESS",
		Short: "Restart one process of a running VM (SIGTERM; the VM starts it again), as systemctl restart does a unit",
		Long: `Restarts one of the processes a VM's image runs — triad-agent, kubelet or cri —
as 'systemctl restart' would on a real node: SIGTERM, then the VM's
supervisor starts it again a second after it exits.

  triad local vm restart demo-cp-a triad-agent
  triad local vm restart i-0004 kubelet`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cloud, err := openLocal(*stateDir)
			if err != nil {
				return err
			}
			in, err := findVM(cloud, cmd, args[0])
			if err != nil {
				return err
			}
			if err := cloud.RestartProcess(cmd.Context(), in.ID, args[1]); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"vm": in.ID, "process": args[1], "restarted": "true"}, func(w io.Writer) {
				fmt.Fprintf(w, "%s (%s): %s exited; the VM starts it again\n", in.ID, in.Name, args[1])
			})
		},
	}
	cmd.AddCommand(list, stop, start, kill, shell, restart)
	return cmd
}

func newLocalLBCommand(g *globals, stateDir *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lb",
		Short: "Look at the local cloud's load balancers",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the load balancers: address, traffic, backends and their health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cloud, err := openLocal(*stateDir)
			if err != nil {
				return err
			}
			lbs, err := cloud.ListLoadBalancers(cmd.Context(), nil)
			if err != nil {
				return err
			}
			if lbs == nil {
				lbs = []sdk.LoadBalancer{}
			}
			return g.print(cmd.OutOrStdout(), lbs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSCHEME\tADDRESS\tTRAFFIC\tBACKENDS")
				for _, lb := range lbs {
					var bs []string
					for _, b := range lb.Backends {
						bs = append(bs, b.InstanceID+"="+string(b.Health))
					}
					traffic := "disabled"
					if lb.TrafficEnabled {
						traffic = "enabled"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\n", lb.ID, lb.Name, lb.Scheme, lb.IP, lb.ListenerPort, traffic, dash(strings.Join(bs, " ")))
				}
				tw.Flush()
			})
		},
	}
	cmd.AddCommand(list)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
