package controlplane

import (
	"context"
	"fmt"
	"sync"

	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// EtcdView is etcd as the agents on a set of nodes see it, each asked at
// once: the one place an operation decides whether the members it expects
// form a healthy cluster.
type EtcdView struct {
	Nodes []Node
	// Status is each node's answer by name; Err why a node gave none.
	Status map[string]*agentv1.GetEtcdStatusResponse
	Err    map[string]error
}

// Etcd asks every node's agent for its etcd status, all at once.
func (c *Cluster) Etcd(ctx context.Context, nodes []Node) *EtcdView {
	v := &EtcdView{Nodes: nodes, Status: map[string]*agentv1.GetEtcdStatusResponse{}, Err: map[string]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			st, err := c.EtcdStatus(ctx, c.AgentEndpoint(n.PrivateIP))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				v.Err[n.Name] = err
			} else {
				v.Status[n.Name] = st
			}
		})
	}
	wg.Wait()
	return v
}

// Problems says, node by node in order, what keeps the cluster from being
// exactly voters voting members and no learner, healthy (a leader and a
// quorum), without alarms, every node agreeing on one leader. None: it is.
func (v *EtcdView) Problems(voters int) []string {
	var problems []string
	var leader uint64
	for _, n := range v.Nodes {
		st, ok := v.Status[n.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %v", n.Name, v.Err[n.Name]))
			continue
		}
		vote, learn := Voters(st)
		switch {
		case !st.GetHealthy() || st.GetLeaderId() == 0:
			problems = append(problems, fmt.Sprintf("%s: etcd not healthy (leader %x, no quorum or no leader)", n.Name, st.GetLeaderId()))
		case vote != voters || learn != 0:
			problems = append(problems, fmt.Sprintf("%s: etcd has %d voting members and %d learners, want %d and none", n.Name, vote, learn, voters))
		case len(st.GetAlarms()) > 0:
			problems = append(problems, fmt.Sprintf("%s: etcd alarms %v", n.Name, st.GetAlarms()))
		case leader != 0 && st.GetLeaderId() != leader:
			problems = append(problems, fmt.Sprintf("%s: members disagree on the leader (%x, %x elsewhere)", n.Name, st.GetLeaderId(), leader))
		}
		if leader == 0 {
			leader = st.GetLeaderId()
		}
	}
	return problems
}

// Leader is the leader's member id as the first node that answered sees
// it (0: none answered).
func (v *EtcdView) Leader() uint64 {
	for _, n := range v.Nodes {
		if st, ok := v.Status[n.Name]; ok {
			return st.GetLeaderId()
		}
	}
	return 0
}

// MemberIDs are the nodes' own member ids by name, for those that answered.
func (v *EtcdView) MemberIDs() map[string]uint64 {
	ids := map[string]uint64{}
	for name, st := range v.Status {
		ids[name] = st.GetMemberId()
	}
	return ids
}

// Voters counts a status's voting members and learners.
func Voters(st *agentv1.GetEtcdStatusResponse) (voters, learners int) {
	for _, m := range st.GetMembers() {
		if m.GetIsLearner() {
			learners++
		} else {
			voters++
		}
	}
	return voters, learners
}
