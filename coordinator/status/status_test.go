package status

import (
	"strings"
	"testing"

	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

func member(id uint64, name string, learner bool) *agentv1.EtcdMember {
	return &agentv1.EtcdMember{Id: id, Name: name, IsLearner: learner}
}

func healthyNode(name string, id, leader uint64, members []*agentv1.EtcdMember) Node {
	return Node{Name: name, Health: fromProto(&agentv1.NodeHealth{
		ApiserverReady: true, EtcdHealthy: true, GateOpen: true, EtcdMemberId: id, EtcdLeaderId: leader, EtcdMembers: members,
		StaticPods: []*agentv1.StaticPod{{Name: "etcd", State: agentv1.StaticPodState_STATIC_POD_STATE_RUNNING}},
	})}
}

func TestFoldFindsWhatMakesAClusterUnhealthy(t *testing.T) {
	three := []*agentv1.EtcdMember{member(1, "a", false), member(2, "b", false), member(3, "c", false)}
	healthy := []Node{healthyNode("a", 1, 2, three), healthyNode("b", 2, 2, three), healthyNode("c", 3, 2, three)}
	c := fold("prod", healthy)
	if !c.Healthy || c.Voters != 3 || c.Learners != 0 || c.Leader != "b" || len(c.Problems) != 0 {
		t.Fatalf("healthy cluster folded to %+v", c)
	}

	withLearner := append([]*agentv1.EtcdMember{}, three...)
	withLearner = append(withLearner, member(4, "d", true))
	nodes := []Node{healthyNode("a", 1, 2, withLearner), healthyNode("b", 2, 2, withLearner), healthyNode("c", 3, 2, withLearner)}
	cases := map[string]struct {
		nodes []Node
		want  string
	}{
		"a learner":        {nodes, "1 etcd learner(s)"},
		"leader disagrees": {[]Node{healthyNode("a", 1, 2, three), healthyNode("b", 2, 3, three), healthyNode("c", 3, 3, three)}, "disagree on the etcd leader"},
		"an agent is down": {[]Node{healthyNode("a", 1, 2, three), healthyNode("b", 2, 2, three), {Name: "c", Error: "connection refused"}}, "c: connection refused"},
		"a gate is closed": {func() []Node { n := []Node{healthyNode("a", 1, 2, three)}; n[0].Health.GateOpen = false; return n }(), "a: gate closed"},
		"a pod is stopped": {func() []Node {
			n := []Node{healthyNode("a", 1, 2, three)}
			n[0].Health.StaticPods["kube-apiserver"] = "stopped"
			return n
		}(), "static pod kube-apiserver stopped"},
		"no etcd answers": {func() []Node { n := []Node{healthyNode("a", 1, 2, three)}; n[0].Health.EtcdHealthy = false; return n }(), "etcd has no leader"},
	}
	for name, tc := range cases {
		c := fold("prod", tc.nodes)
		if c.Healthy || !strings.Contains(strings.Join(c.Problems, "\n"), tc.want) {
			t.Errorf("%s: healthy %v, problems %q; want one saying %q", name, c.Healthy, c.Problems, tc.want)
		}
	}
	if c := fold("prod", nodes); c.Learners != 1 || c.Voters != 3 {
		t.Errorf("with a learner: %d voters, %d learners", c.Voters, c.Learners)
	}
}
