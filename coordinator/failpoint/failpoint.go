// Package failpoint lets a test kill the coordinator at a named point, the
// way a power cut or an OOM kill would: TRIAD_FAILPOINTS=name[,name...] in
// the coordinator's environment makes Hit(name) SIGKILL the process. Off
// unless the variable is set (read once, at the first Hit); a Hit costs one
// map lookup. It owns no state beyond the parsed variable and must never be
// used for anything but crash tests.
package failpoint

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// EnvVar names the failpoints to arm.
const EnvVar = "TRIAD_FAILPOINTS"

var (
	once  sync.Once
	armed map[string]bool
)

// Hit kills the process with SIGKILL when name is armed.
func Hit(name string) {
	once.Do(func() {
		armed = map[string]bool{}
		for _, n := range strings.Split(os.Getenv(EnvVar), ",") {
			if n = strings.TrimSpace(n); n != "" {
				armed[n] = true
			}
		}
	})
	if !armed[name] {
		return
	}
	// The line tells a test's log where the process died.
	fmt.Fprintf(os.Stderr, "failpoint %s: SIGKILL\n", name)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously on every platform
}
