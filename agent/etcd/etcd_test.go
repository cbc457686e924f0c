package etcd_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
)

// threeMembers starts a new 3-member cluster on 127.0.0.21-23.
func threeMembers(t *testing.T) []etcdtest.Member {
	t.Helper()
	ms := []etcdtest.Member{{Name: "a", IP: "127.0.0.21"}, {Name: "b", IP: "127.0.0.22"}, {Name: "c", IP: "127.0.0.23"}}
	for i := range ms {
		ms[i] = etcdtest.WithPorts(t, ms[i])
		ms[i].DataDir = filepath.Join(t.TempDir(), "etcd")
	}
	var servers []*embed.Etcd
	for _, m := range ms {
		servers = append(servers, etcdtest.Start(t, m, etcdtest.InitialCluster(ms...), embed.ClusterStateFlagNew, "three"))
	}
	for _, s := range servers {
		etcdtest.WaitReady(t, s)
	}
	return ms
}

// watchQuorum does a linearizable read every 20ms until the test ends and
// counts the failures.
func watchQuorum(t *testing.T, endpoints []string) *atomic.Int64 {
	t.Helper()
	cli := etcdtest.Client(t, endpoints...)
	failures := &atomic.Int64{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cli.Get(rctx, "quorum-probe")
			rcancel()
			if err != nil && ctx.Err() == nil {
				failures.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return failures
}

func TestLearnerIsAddedPromotedAndRemovedWithoutLosingQuorum(t *testing.T) {
	ms := threeMembers(t)
	ctx := t.Context()
	cfg := etcd.Config{Endpoint: ms[0].ClientURL()}
	cli, err := cfg.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	failures := watchQuorum(t, []string{ms[0].ClientURL(), ms[1].ClientURL(), ms[2].ClientURL()})

	d := etcdtest.WithPorts(t, etcdtest.Member{Name: "d", IP: "127.0.0.24", DataDir: filepath.Join(t.TempDir(), "etcd")})
	// etcd refuses membership changes until every member has been connected
	// for a few seconds ("unhealthy cluster"); a fresh cluster needs a moment.
	var added etcd.Member
	var members []etcd.Member
	eventually(t, "AddLearner", func() (err error) {
		added, members, err = etcd.AddLearner(ctx, cli, []string{d.PeerURL()})
		return err
	})
	if !added.IsLearner || len(members) != 4 {
		t.Fatalf("after AddLearner: added %+v, %d members", added, len(members))
	}
	again, _, err := etcd.AddLearner(ctx, cli, []string{d.PeerURL()})
	if err != nil || again.ID != added.ID {
		t.Fatalf("retried AddLearner = %+v, %v; want the same member", again, err)
	}
	if _, _, err := etcd.AddLearner(ctx, cli, []string{"http://127.0.0.25:2380"}); !errors.Is(err, etcd.ErrQuorumAtRisk) {
		t.Fatalf("second learner: %v, want ErrQuorumAtRisk", err)
	}

	etcdtest.WaitReady(t, etcdtest.Start(t, d, etcdtest.InitialCluster(append(ms, d)...), embed.ClusterStateFlagExisting, "three"))
	// etcd refuses to promote a learner that has not caught up; retry.
	eventually(t, "Promote", func() (err error) {
		members, err = etcd.Promote(ctx, cli, added.ID)
		return err
	})
	for _, m := range members {
		if m.IsLearner {
			t.Fatalf("member %s still a learner after Promote", m.Name)
		}
	}

	st, err := etcd.GetStatus(ctx, cli, ms[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || len(st.Members) != 4 || st.LeaderID == 0 {
		t.Fatalf("status after promote: %+v", st)
	}

	// Move leadership to d, then remove the member that led before.
	leader, err := etcd.MoveLeader(ctx, cfg, cli, added.ID)
	if err != nil {
		t.Fatalf("MoveLeader: %v", err)
	}
	if leader != added.ID {
		t.Fatalf("leader after MoveLeader = %x, want %x", leader, added.ID)
	}
	var removeID uint64
	for _, m := range st.Members {
		if m.Name == "c" {
			removeID = m.ID
		}
	}
	eventually(t, "Remove", func() (err error) {
		members, err = etcd.Remove(ctx, cli, removeID)
		return err
	})
	if len(members) != 3 {
		t.Fatalf("%d members after Remove, want 3", len(members))
	}
	if _, err := etcd.Remove(ctx, cli, removeID); err != nil {
		t.Fatalf("retried Remove: %v", err)
	}
	if n := failures.Load(); n != 0 {
		t.Errorf("%d linearizable reads failed during the membership changes: quorum was lost", n)
	}
}

func TestRemovingAVoterBelowTwoIsRefused(t *testing.T) {
	_, m := etcdtest.StartSingle(t, etcdtest.Member{Name: "solo", IP: "127.0.0.26", DataDir: t.TempDir()})
	cli := etcdtest.Client(t, m.ClientURL())
	members, err := etcd.ListMembers(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Remove(t.Context(), cli, members[0].ID); !errors.Is(err, etcd.ErrQuorumAtRisk) {
		t.Fatalf("Remove of the last voter: %v, want ErrQuorumAtRisk", err)
	}
}

// eventually retries f for up to 30s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
