package cri

import (
	"syscall"
	"testing"
)

// TestSIGTERMReachesAContainerOnce: k8s.io/apiserver's signal handler
// exits at once on a second SIGTERM, skipping the graceful shutdown; two
// kills (the group's and the process's) deliver two unless the kernel
// happens to merge them, so the rule is checked on the calls themselves.
func TestSIGTERMReachesAContainerOnce(t *testing.T) {
	type call struct {
		pid int
		sig syscall.Signal
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		want []call
	}{
		{syscall.SIGTERM, []call{{4242, syscall.SIGTERM}}},
		{syscall.SIGKILL, []call{{-4242, syscall.SIGKILL}, {4242, syscall.SIGKILL}}},
	} {
		var got []call
		signalContainer(func(pid int, sig syscall.Signal) error { got = append(got, call{pid, sig}); return nil }, 4242, tc.sig)
		if len(got) != len(tc.want) {
			t.Fatalf("%v: kills %v, want %v", tc.sig, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%v: kills %v, want %v", tc.sig, got, tc.want)
			}
		}
	}
}
