// Command triad-cloud-local is triad's embedded default cloud plugin. Started
// by triad (go-plugin), it serves the local cloud; started with a role (vm,
// lb, forward) by the local cloud itself, it is one of the cloud's
// long-lived processes. See cloudplugins/local.
package main

import (
	"fmt"
	"os"

	"github.com/triad-k8s/triad/cloudplugins/local/localcmd"
)

func main() {
	if err := localcmd.Main(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "triad-cloud-local: %v\n", err)
		os.Exit(1)
	}
}
