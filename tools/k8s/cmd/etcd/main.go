// Command etcd is the etcd server, built from the etcd module version that
// the pinned Kubernetes release uses (see go.mod), for the local cloud's
// control-plane image and the e2e tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
