package controlplane

import (
	"errors"
	"strings"
	"testing"

	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

func etcdStatus(member, leader uint64, healthy bool, learners int, alarms ...string) *agentv1.GetEtcdStatusResponse {
	st := &agentv1.GetEtcdStatusResponse{MemberId: member, LeaderId: leader, Healthy: healthy, Alarms: alarms}
	for id := uint64(1); id <= 3; id++ {
		st.Members = append(st.Members, &agentv1.EtcdMember{Id: id})
	}
	for i := range learners {
		st.Members = append(st.Members, &agentv1.EtcdMember{Id: uint64(10 + i), IsLearner: true})
	}
	return st
}

func view(statuses ...*agentv1.GetEtcdStatusResponse) *EtcdView {
	v := &EtcdView{Status: map[string]*agentv1.GetEtcdStatusResponse{}, Err: map[string]error{}}
	for i, st := range statuses {
		n := Node{Name: string(rune('a' + i))}
		v.Nodes = append(v.Nodes, n)
		if st == nil {
			v.Err[n.Name] = errors.New("connection refused")
		} else {
			v.Status[n.Name] = st
		}
	}
	return v
}

func TestEtcdViewProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		view *EtcdView
		want string // "" for none
	}{
		"healthy":         {view(etcdStatus(1, 2, true, 0), etcdStatus(2, 2, true, 0), etcdStatus(3, 2, true, 0)), ""},
		"no answer":       {view(etcdStatus(1, 2, true, 0), nil, etcdStatus(3, 2, true, 0)), "b: connection refused"},
		"unhealthy":       {view(etcdStatus(1, 0, false, 0), etcdStatus(2, 2, true, 0), etcdStatus(3, 2, true, 0)), "a: etcd not healthy"},
		"learner":         {view(etcdStatus(1, 2, true, 1), etcdStatus(2, 2, true, 1), etcdStatus(3, 2, true, 1)), "1 learners, want 3 and none"},
		"alarm":           {view(etcdStatus(1, 2, true, 0, "NOSPACE"), etcdStatus(2, 2, true, 0), etcdStatus(3, 2, true, 0)), "a: etcd alarms [NOSPACE]"},
		"leader disagree": {view(etcdStatus(1, 2, true, 0), etcdStatus(2, 3, true, 0), etcdStatus(3, 2, true, 0)), "b: members disagree on the leader"},
	} {
		t.Run(name, func(t *testing.T) {
			got := strings.Join(tc.view.Problems(3), "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
		})
	}
	v := view(etcdStatus(1, 2, true, 0), nil, etcdStatus(3, 2, true, 0))
	if v.Leader() != 2 || len(v.MemberIDs()) != 2 || v.MemberIDs()["c"] != 3 {
		t.Errorf("leader %x, member ids %v", v.Leader(), v.MemberIDs())
	}
}
