// Command triad-agent is triad's node agent. See 'triad-agent --help'.
package main

import (
	"os"

	"github.com/triad-k8s/triad/agent/cli"
)

func main() { os.Exit(cli.Execute()) }
