package cli

import (
	"fmt"
	"strings"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/coordinator/config"
	"github.com/triad-k8s/triad/coordinator/engine"
	"github.com/triad-k8s/triad/coordinator/migrate"
	"github.com/triad-k8s/triad/coordinator/upgrade"
)

// The step lists in --help come from the plans the engine runs, so that
// they cannot drift from the code.

// migrateStepsHelp lists the migration's steps with what each does.
func migrateStepsHelp() string {
	steps := migrate.Plan(migrate.NewEnv(&config.Cluster{}, nil, nil, etcdsnap.Store{}, migrate.Options{})).Steps
	return stepsHelp("Steps (names as plan, run, status and the journal show them):", steps, nil)
}

// upgradeStepsHelp lists the upgrade's steps, the three of a node once,
// with N for the node's place in the upgrade order.
func upgradeStepsHelp() string {
	steps := upgrade.Plan(upgrade.NewEnv(&config.Cluster{}, nil, nil, upgrade.Options{})).Steps
	return stepsHelp("Steps (node N: its place in the upgrade order, followers first):", steps, func(name string) (string, bool) {
		for _, per := range []func(int) string{upgrade.StepJoin, upgrade.StepPromote, upgrade.StepSwitch} {
			if name == per(1) {
				return strings.Replace(name, "1", "N", 1), true
			}
			for i := 2; i <= upgrade.Nodes; i++ {
				if name == per(i) {
					return "", false
				}
			}
		}
		return name, true
	})
}

// stepsHelp prints each step's name and summary, wrapped; rename, if not
// nil, renames a step or leaves it out.
func stepsHelp[S any](title string, steps []engine.Step[S], rename func(string) (string, bool)) string {
	width := 0
	var names []string
	var shown []engine.Step[S]
	for _, s := range steps {
		name := s.Name
		if rename != nil {
			var ok bool
			if name, ok = rename(name); !ok {
				continue
			}
		}
		if s.PointOfNoReturn {
			name += " *"
		}
		names, shown = append(names, name), append(shown, s)
		width = max(width, len(name))
	}
	var b strings.Builder
	b.WriteString(title + "\n")
	noReturn := false
	for i, s := range shown {
		noReturn = noReturn || s.PointOfNoReturn
		lines := wrapWords(s.Summary, 78-4-width)
		for j, l := range lines {
			label := ""
			if j == 0 {
				label = names[i]
			}
			fmt.Fprintf(&b, "  %-*s  %s\n", width, label, l)
		}
	}
	if noReturn {
		b.WriteString("  * the point of no return: once it starts, nothing rolls back\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// wrapWords breaks s into lines of at most width characters.
func wrapWords(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines, line = append(lines, line), ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
