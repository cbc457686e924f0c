// Command triad is the coordinator CLI. See 'triad --help'.
package main

import (
	"os"

	"github.com/triad-k8s/triad/coordinator/cli"
)

func main() { os.Exit(cli.Execute()) }
