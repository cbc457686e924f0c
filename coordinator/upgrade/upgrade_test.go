package upgrade

import (
	"strings"
	"testing"

	"github.com/triad-k8s/triad/coordinator/controlplane"
)

func TestReplacementNamesStayShortAcrossUpgrades(t *testing.T) {
	first := replacementName("prod-cp-a", "upgrade-20261126-142750-aaece0")
	if first != "prod-cp-a-uaaece0" {
		t.Fatalf("first replacement %q", first)
	}
	// The next upgrade replaces the suffix instead of stacking another.
	if second := replacementName(first, "upgrade-20261201-090000-b0b0b0"); second != "prod-cp-a-ub0b0b0" {
		t.Fatalf("second replacement %q", second)
	}
	// A name that merely contains "-u" is not mistaken for a suffix.
	if got := replacementName("eu-ucp-1", "upgrade-x-123456"); got != "eu-ucp-1-u123456" {
		t.Fatalf("got %q", got)
	}
}

func TestBadInputIsRefusedBeforeAnythingStarts(t *testing.T) {
	migrated := &Migrated{Operation: "m-1", PrivateIP: "10.0.0.10", PublicIP: "203.0.113.10", InternalLB: "lb-1", PublicLB: "lb-2", DiskSnapshotID: "snap-1"}
	for _, tc := range []struct {
		name  string
		state *State
		want  []string
	}{
		{"no image", NewState("c", migrated, "", "", ""), []string{"--image is required"}},
		{"never migrated", NewState("c", nil, "img", "", "snap-9"), []string{"no succeeded migration"}},
		{"no disk snapshot", NewState("c", &Migrated{Operation: "m-1", InternalLB: "lb-1", PublicLB: "lb-2"}, "img", "", ""), []string{"--disk-snapshot"}},
		{"bad version", NewState("c", migrated, "img", "1.36", ""), []string{`--kubernetes-version "1.36"`}},
		{"everything at once", NewState("c", nil, "", "x y", ""), []string{"--image", "no succeeded migration", "--disk-snapshot", "--kubernetes-version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.state.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	ok := NewState("c", migrated, "img", "v1.36.4+build.1", "")
	if err := ok.Validate(); err != nil {
		t.Fatalf("good input refused: %v", err)
	}
	if ok.DiskSnapshotID != "snap-1" || ok.InternalLB != "lb-1" || ok.PrivateIP != "10.0.0.10" {
		t.Errorf("state from the migration: %+v", ok)
	}
	if own := NewState("c", migrated, "img", "", "snap-2"); own.DiskSnapshotID != "snap-2" {
		t.Errorf("--disk-snapshot ignored: %+v", own)
	}
}

func TestServingFollowsEachNodesSwitch(t *testing.T) {
	s := &State{Nodes: []NodeUpgrade{
		{Old: controlplane.Node{Name: "a"}, New: controlplane.Node{Name: "a2"}, Switched: true},
		{Old: controlplane.Node{Name: "b"}, New: controlplane.Node{Name: "b2"}},
		{Old: controlplane.Node{Name: "c"}},
	}}
	var names []string
	for _, n := range s.Serving() {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "a2,b,c" {
		t.Fatalf("serving %v", names)
	}
}
