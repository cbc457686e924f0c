package bootdata_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/agent/bootdata"
)

func TestRoundTripMissingAndUnknownFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boot.json")
	if d, err := bootdata.Read(path); err != nil || len(d.HoldStaticPods) != 0 {
		t.Fatalf("no file: %+v %v, want no boot data and no error", d, err)
	}
	raw, err := bootdata.Data{HoldStaticPods: []string{"etcd", "kube-apiserver"}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if d, err := bootdata.Read(path); err != nil || !slices.Equal(d.HoldStaticPods, []string{"etcd", "kube-apiserver"}) {
		t.Fatalf("round trip: %+v %v", d, err)
	}
	if err := os.WriteFile(path, []byte(`{"holdStaticPod":["etcd"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bootdata.Read(path); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("misspelt field: %v, want an error (a typo must not silently hold nothing)", err)
	}
}
