// Command triad-cloud-local is triad's embedded default cloud plugin. Started
// by triad (go-plugin), it serves the local cloud; started with a role (vm,
// lb, forward) by the local cloud itself, it is one of the cloud's
// long-lived processes. See cloudplugins/local.
package main

import (
	"fmt"
	"os"

	"github.com/triad-k8s/triad/cloudplugins/local/cri"
	"github.com/triad-k8s/triad/cloudplugins/local/localcmd"
)

func main() {
	args := os.Args[1:]
	role := ""
	if len(args) > 0 {
		role = args[0]
	}
	var err error
	switch role {
	case "cri": // inside a VM: the container runtime the kubelet drives
		err = cri.Main(args[1:])
	case "placeholder": // inside a VM: a container whose image is not built here
		err = cri.Placeholder(args[1:])
	default:
		err = localcmd.Main(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "triad-cloud-local: %v\n", err)
		os.Exit(1)
	}
}
