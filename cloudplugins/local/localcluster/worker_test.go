package localcluster

import (
	"strings"
	"testing"
)

func TestParseJoinCommand(t *testing.T) {
	out := "W1202 warning on stderr would not be here\n" +
		"kubeadm join 198.18.48.4:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00ff \n"
	argv, apiserver, err := parseJoinCommand(out)
	if err != nil {
		t.Fatal(err)
	}
	if apiserver != "198.18.48.4:6443" || strings.Join(argv, " ") != "kubeadm join 198.18.48.4:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00ff" {
		t.Errorf("got %q via %q", argv, apiserver)
	}
	for _, bad := range []string{"", "kubeadm join --token x", "kubeadm token list\n", "join 1.2.3.4:6443"} {
		if _, _, err := parseJoinCommand(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
