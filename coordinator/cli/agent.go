package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// agentFlags select one agent and the identity used to call it.
type agentFlags struct {
	endpoint string
	cluster  string
	identity string
	timeout  time.Duration
	tls      auth.TLSFiles
}

func (f *agentFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.endpoint, "endpoint", "", "agent address, host:port (required)")
	cmd.PersistentFlags().StringVar(&f.cluster, "cluster", "", "cluster the agent belongs to (required)")
	cmd.PersistentFlags().StringVar(&f.identity, "as", "coordinator/default", "client identity <role>/<name> from --pki-dir")
	cmd.PersistentFlags().StringVar(&f.tls.CertFile, "tls-cert", "", "client certificate (overrides --as)")
	cmd.PersistentFlags().StringVar(&f.tls.KeyFile, "tls-key", "", "client key (overrides --as)")
	cmd.PersistentFlags().StringVar(&f.tls.CAFile, "tls-ca", "", "triad CA certificate (default <pki-dir>/ca.crt)")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout of the call")
}

func (f *agentFlags) dial(g *globals) (*agentclient.Client, error) {
	if f.endpoint == "" || f.cluster == "" {
		return nil, fmt.Errorf("--endpoint and --cluster are required")
	}
	files := f.tls
	d := pki.Dir{Path: g.pkiDir}
	if files.CAFile == "" {
		files.CAFile = d.CAFile()
	}
	if files.CertFile == "" || files.KeyFile == "" {
		role, name, ok := strings.Cut(f.identity, "/")
		if !ok || !auth.Role(role).Valid() {
			return nil, fmt.Errorf("--as %q: want <role>/<name>, e.g. coordinator/ci or observer/dashboards", f.identity)
		}
		files.CertFile, files.KeyFile = d.LeafFiles(auth.Role(role), name)
	}
	return agentclient.Dial(f.endpoint, f.cluster, files)
}

func newAgentCommand(g *globals) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Talk to one triad-agent directly",
		Long: `Call one triad-agent over mutual TLS, as a coordinator or an observer.
Operations such as migrate and upgrade drive the agents themselves; these
commands are for inspection and for repairs by hand.`,
		Example: `  triad agent info --endpoint 10.0.0.10:9443 --cluster prod-eu1
  triad agent gate get --endpoint 10.0.0.10:9443 --cluster prod-eu1 --as observer/dashboards`,
	}
	f.register(cmd)
	cmd.AddCommand(newAgentInfoCommand(g, f), newAgentHealthCommand(g, f), newAgentGateCommand(g, f))
	return cmd
}

func newAgentInfoCommand(g *globals, f *agentFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the agent's identity, versions, paths and fencing epoch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAgent(cmd, g, f, func(ctx context.Context, c *agentclient.Client) (proto.Message, error) {
				return c.GetInfo(ctx, &agentv1.GetInfoRequest{})
			})
		},
	}
}

func newAgentHealthCommand(g *globals, f *agentFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Show the node's health: kube-apiserver, etcd, static pods, gate, disk, versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAgent(cmd, g, f, func(ctx context.Context, c *agentclient.Client) (proto.Message, error) {
				return c.GetHealth(ctx, &agentv1.GetHealthRequest{})
			})
		},
	}
}

func newAgentGateCommand(g *globals, f *agentFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Read or set the agent's load-balancer gate",
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "Show whether the gate is open",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAgent(cmd, g, f, func(ctx context.Context, c *agentclient.Client) (proto.Message, error) {
				return c.GetGate(ctx, &agentv1.GetGateRequest{})
			})
		},
	}
	var header agentv1.RequestHeader
	set := &cobra.Command{
		Use:   "set open|closed --operation-id ID --epoch N",
		Short: "Open or close the gate (a fenced, mutating call)",
		Long: `Open or close the gate. Like every mutating call it carries an operation id
and a fencing epoch: the agent refuses an epoch lower than the highest it has
seen, so a hand repair cannot race a running coordinator unless you take over
with a higher epoch on purpose.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"open", "closed"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var open bool
			switch args[0] {
			case "open":
				open = true
			case "closed":
			default:
				return fmt.Errorf("gate state %q: want open or closed", args[0])
			}
			header.Cluster = f.cluster
			return callAgent(cmd, g, f, func(ctx context.Context, c *agentclient.Client) (proto.Message, error) {
				return c.SetGate(ctx, &agentv1.SetGateRequest{Header: &header, Open: open})
			})
		},
	}
	set.Flags().StringVar(&header.OperationId, "operation-id", "", "operation id (required)")
	set.Flags().Uint64Var(&header.Epoch, "epoch", 0, "fencing epoch (required, > 0)")
	cmd.AddCommand(get, set)
	return cmd
}

// callAgent dials, calls and prints the response as JSON or as protobuf
// text with the field names of the proto.
func callAgent(cmd *cobra.Command, g *globals, f *agentFlags, call func(context.Context, *agentclient.Client) (proto.Message, error)) error {
	c, err := f.dial(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	resp, err := call(ctx, c)
	if err != nil {
		return fmt.Errorf("agent %s: %w", f.endpoint, err)
	}
	data, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		return err
	}
	return g.print(cmd.OutOrStdout(), rawJSON(data), func(w io.Writer) {
		fmt.Fprintln(w, string(data))
	})
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
