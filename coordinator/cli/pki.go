package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/coordinator/pki"
)

func newPKICommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Manage triad's own CA and the certificates of agents, coordinators and observers",
		Long: `triad secures coordinator <-> agent traffic with mutual TLS (TLS 1.3) from its
own CA, separate from every cluster's Kubernetes CA.

Roles are carried in the certificates:
  agent        serving certificate of every triad-agent of one cluster. All
               agents of a cluster share it (its DNS name is
               agent.<cluster>.triad.internal), so a VM cloned from a disk
               snapshot keeps a valid identity.
  coordinator  client certificate that may call every agent RPC.
  observer     client certificate that may only read health and status.

Keys are ECDSA P-256 and written 0600. Nothing is ever overwritten unless
--replace is given.`,
		Example: `  triad pki init
  triad pki issue agent --name prod-eu1        # copy to the cluster's control-plane VMs
  triad pki issue coordinator --name default  # the identity triad uses unless --as is given
  triad pki issue observer --name dashboards`,
	}
	cmd.AddCommand(newPKIInitCommand(g), newPKIIssueCommand(g))
	return cmd
}

func newPKIInitCommand(g *globals) *cobra.Command {
	var cn string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create triad's CA in --pki-dir (refuses to replace an existing one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			iss, err := pki.Dir{Path: g.pkiDir}.Init(cn, validity)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), iss, func(w io.Writer) {
				fmt.Fprintf(w, "created CA %s (key %s), valid until %s\n", iss.CertFile, iss.KeyFile, iss.NotAfter.Format(time.DateOnly))
			})
		},
	}
	cmd.Flags().StringVar(&cn, "common-name", "triad-ca", "common name of the CA certificate")
	cmd.Flags().DurationVar(&validity, "validity", pki.DefaultCAValidity, "validity of the CA certificate")
	return cmd
}

func newPKIIssueCommand(g *globals) *cobra.Command {
	var name string
	var validity time.Duration
	var replace bool
	cmd := &cobra.Command{
		Use:   "issue agent|coordinator|observer --name NAME",
		Short: "Issue a certificate signed by triad's CA",
		Long: `Issue a certificate for a role. For an agent, --name is the cluster name and
the certificate is valid for agent.<cluster>.triad.internal; for a coordinator
or an observer it is a free name (a pipeline, a team).

Files are written to <pki-dir>/<role>s/<name>.crt and .key.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{string(auth.RoleAgent), string(auth.RoleCoordinator), string(auth.RoleObserver)},
		RunE: func(cmd *cobra.Command, args []string) error {
			role := auth.Role(args[0])
			if !role.Valid() {
				return fmt.Errorf("unknown role %q: want agent, coordinator or observer", args[0])
			}
			if name == "" {
				return fmt.Errorf("--name is required (the cluster name for an agent)")
			}
			iss, err := pki.Dir{Path: g.pkiDir}.Issue(pki.IssueRequest{Role: role, Name: name, Validity: validity, Replace: replace})
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), iss, func(w io.Writer) {
				fmt.Fprintf(w, "issued %s certificate %q\n  cert: %s\n  key:  %s\n  ca:   %s\n  valid until %s\n",
					iss.Role, iss.Name, iss.CertFile, iss.KeyFile, iss.CAFile, iss.NotAfter.Format(time.DateOnly))
				for _, dns := range iss.DNSNames {
					fmt.Fprintf(w, "  DNS name: %s\n", dns)
				}
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (agent) or certificate name (coordinator, observer)")
	cmd.Flags().DurationVar(&validity, "validity", pki.DefaultLeafValidity, "validity of the certificate (capped at the CA's expiry)")
	cmd.Flags().BoolVar(&replace, "replace", false, "overwrite an existing certificate of the same name")
	return cmd
}
