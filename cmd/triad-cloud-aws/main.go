// Command triad-cloud-aws is triad's AWS cloud plugin. triad starts it
// (hashicorp/go-plugin) with the cluster file's cloud.config in
// TRIAD_CLOUD_CONFIG; see cloudplugins/aws/README.md.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "triad-cloud-aws: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Getenv(sdk.Handshake.MagicCookieKey) != sdk.Handshake.MagicCookieValue {
		return fmt.Errorf("this is a triad cloud plugin; triad starts it (cloud.plugin in the cluster file), see cloudplugins/aws/README.md")
	}
	cfg, err := aws.ParseConfig(sdk.Config())
	if err != nil {
		return err
	}
	p, err := aws.New(context.Background(), cfg)
	if err != nil {
		return err
	}
	sdk.Serve(p)
	return nil
}
