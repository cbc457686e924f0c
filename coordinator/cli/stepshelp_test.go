package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

// --help shows every step of the plans the engine runs, with its summary.
func TestHelpShowsThePlansSteps(t *testing.T) {
	help := func(args ...string) string {
		root := NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append(args, "--help"))
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(out.String()), " ")
	}
	mig := help("migrate")
	for _, s := range migrate.Plan(migrate.NewEnv(&config.Cluster{}, nil, nil, etcdsnap.Store{}, migrate.Options{})).Steps {
		if !strings.Contains(mig, s.Name) || !strings.Contains(mig, s.Summary) {
			t.Errorf("migrate --help lacks step %s (%q)", s.Name, s.Summary)
		}
	}
	up := help("upgrade")
	for _, s := range upgrade.Plan(upgrade.NewEnv(&config.Cluster{}, nil, nil, upgrade.Options{})).Steps {
		name := strings.Replace(s.Name, "node-1-", "node-N-", 1)
		if strings.HasPrefix(name, "node-") && !strings.HasPrefix(name, "node-N-") {
			continue
		}
		if !strings.Contains(up, name) || !strings.Contains(up, s.Summary) {
			t.Errorf("upgrade --help lacks step %s (%q)", name, s.Summary)
		}
	}
	if strings.Contains(up, "node-2-join") {
		t.Error("upgrade --help lists node 2's steps; node N's stand for every node")
	}
}
