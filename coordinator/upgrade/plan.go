// Package upgrade replaces the control-plane nodes of a migrated cluster
// one at a time with VMs of a new image (DESIGN §3), as a step list for
// coordinator/engine: per node, the old node is drained behind its closed
// gate, the replacement joins etcd as a learner, is promoted and validated
// directly, takes the old node's place behind the load balancers, and the
// old member and VM go. A failure rolls back the node in progress and stops
// the upgrade; the nodes already replaced keep the new image.
package upgrade

import (
	"context"
	"fmt"

	"github.com/triad-k8s/triad/coordinator/engine"
)

// Nodes is how many control-plane nodes an upgrade replaces.
const Nodes = 3

// Step names are part of the UI.
const (
	StepPreflight  = "preflight"
	StepPostflight = "postflight"
)

// StepJoin, StepPromote and StepSwitch name node i's (1-based) steps.
func StepJoin(i int) string    { return fmt.Sprintf("node-%d-join", i) }
func StepPromote(i int) string { return fmt.Sprintf("node-%d-promote", i) }
func StepSwitch(i int) string  { return fmt.Sprintf("node-%d-switch", i) }

// ProbeConfigMap is the object validation writes and reads through each
// replacement node directly.
const ProbeConfigMap = "triad-upgrade-probe"

// Plan is the upgrade as a step list over e.
func Plan(e *Env) engine.Plan[State] {
	steps := []engine.Step[State]{
		{Name: StepPreflight, Summary: "cluster preconditions (3 healthy voting members, no learner, no alarm, every kube-apiserver ready, every load-balancer backend healthy); the disk snapshot and image exist; order the nodes followers first, leader last",
			Touches: func(s *State) []string {
				return []string{"reads only: agents, etcd status, load balancers " + s.InternalLB + " and " + s.PublicLB + ", disk snapshot " + s.DiskSnapshotID}
			},
			Do: e.preflight},
	}
	for i := 1; i <= Nodes; i++ {
		at := i - 1
		node := func(s *State) string {
			if at < len(s.Nodes) {
				return s.Nodes[at].Old.Name + " (" + s.Nodes[at].Old.InstanceID + ")"
			}
			return fmt.Sprintf("node %d in upgrade order (known after preflight)", i)
		}
		steps = append(steps,
			engine.Step[State]{Name: StepJoin(i),
				Summary: "move etcd leadership away if needed; close the node's gate and let the load balancers drain it; create its replacement from the new image and disk snapshot; re-issue its certificates; add it as an etcd learner and start etcd (empty data directory)",
				Touches: func(s *State) []string {
					return []string{"gate of " + node(s), "a new instance of image " + s.Image, "etcd membership (one learner)"}
				},
				UndoSummary: "remove the new member, delete the new VM, reopen the old node's gate (nothing once the node is switched)",
				Do:          func(ctx context.Context, op *engine.Op[State]) error { return e.join(ctx, op, at) },
				Undo:        func(ctx context.Context, op *engine.Op[State]) error { return e.unjoin(ctx, op, at) }},
			engine.Step[State]{Name: StepPromote(i),
				Summary: "promote the learner once it has caught up; start kube-apiserver, kube-controller-manager and kube-scheduler on the new node; validate it directly (readyz, etcd health, a write and a read through it)",
				Touches: func(s *State) []string {
					return []string{"etcd membership (learner → voter)", "static pods of the new node", "ConfigMap kube-system/" + ProbeConfigMap}
				},
				UndoSummary: "nothing (the member and VM go with the join's undo)",
				Do:          func(ctx context.Context, op *engine.Op[State]) error { return e.promote(ctx, op, at) }},
			engine.Step[State]{Name: StepSwitch(i),
				Summary: "add the new node to both load balancers and open its gate; stop the old node's control plane (graceful); remove its etcd member; take it out of the load balancers; delete the old VM; delete the old etcd data kept aside on the new node",
				Touches: func(s *State) []string {
					return []string{"load balancers " + s.InternalLB + ", " + s.PublicLB, "etcd membership (old member removed)", "instance " + node(s) + " (deleted)", "the old etcd data kept aside on the new node (deleted)"}
				},
				UndoSummary: "before the old member's removal: take the new node out of the load balancers and restart the old node's control plane; after it: finish the switch (the old node cannot come back)",
				Do:          func(ctx context.Context, op *engine.Op[State]) error { return e.switchNode(ctx, op, at) },
				Undo:        func(ctx context.Context, op *engine.Op[State]) error { return e.unswitch(ctx, op, at) }},
		)
	}
	steps = append(steps, engine.Step[State]{Name: StepPostflight,
		Summary: "3 healthy voting members, every node on the image and serving behind both load balancers; the control-plane Nodes are exactly the new ones, all Ready",
		Touches: func(s *State) []string {
			return []string{"reads only: agents, etcd status, load balancers, instances, Nodes"}
		},
		Do: e.postflight})
	return engine.Plan[State]{Kind: Kind, Steps: steps}
}
