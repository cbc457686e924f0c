// Package etcd is the agent's view of the local etcd member through client
// v3: status, health, alarms and membership changes. It talks to etcd only
// over its client API with the node's etcd client certificate, never to the
// data directory (that is etcdsnap's job).
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// ErrQuorumAtRisk means a membership change would leave the cluster unable
// to reach quorum if one more member failed to come up.
var ErrQuorumAtRisk = errors.New("membership change would risk quorum")

// ErrUnreachable means the local member did not answer.
var ErrUnreachable = errors.New("etcd unreachable")

// ErrMemberNotFound means no member has the given id.
var ErrMemberNotFound = errors.New("etcd member not found")

// Config says how to reach the local member.
type Config struct {
	// Endpoint is the local member's client URL, e.g. https://127.0.0.1:2379.
	Endpoint string
	// CertFile, KeyFile and CAFile are the etcd client certificate (kubeadm:
	// /etc/kubernetes/pki/etcd/healthcheck-client.{crt,key}) and etcd's CA
	// (/etc/kubernetes/pki/etcd/ca.crt). Empty means plain HTTP, which only
	// tests use.
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds connection set-up. Defaults to 5s.
	DialTimeout time.Duration
}

// TLS returns the client TLS configuration, nil for plain HTTP.
func (c Config) TLS() (*tls.Config, error) {
	if c.CertFile == "" && c.KeyFile == "" && c.CAFile == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading etcd client certificates: %w", err)
	}
	return cfg, nil
}

// Dial connects to the given endpoints (the local one when none are given).
func (c Config) Dial(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = []string{c.Endpoint}
	}
	tlsCfg, err := c.TLS()
	if err != nil {
		return nil, err
	}
	timeout := c.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: timeout,
		Context:     ctx,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithBlock()}, //nolint:staticcheck // fail fast when the member is down
	})
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to %v: %w", ErrUnreachable, endpoints, err)
	}
	return cli, nil
}

// Member is one member of the cluster.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// Status is the local member's view of the cluster.
type Status struct {
	MemberID, LeaderID, ClusterID, RaftTerm uint64
	Members                                 []Member
	Revision, DBSize, DBSizeInUse           int64
	Alarms                                  []string
	Healthy                                 bool
	Version                                 string
}

// GetStatus reads the status of the member at endpoint through cli.
// Healthy is true when a linearizable read went through the cluster.
func GetStatus(ctx context.Context, cli *clientv3.Client, endpoint string) (Status, error) {
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return Status{}, fmt.Errorf("etcd status of %s: %w", endpoint, err)
	}
	out := Status{
		MemberID: st.Header.MemberId, LeaderID: st.Leader, ClusterID: st.Header.ClusterId, RaftTerm: st.RaftTerm,
		Revision: st.Header.Revision, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse, Version: st.Version,
	}
	members, err := ListMembers(ctx, cli)
	if err != nil {
		return Status{}, err
	}
	out.Members = members
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("etcd alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		out.Alarms = append(out.Alarms, a.Alarm.String())
	}
	// Any key will do: a linearizable read needs the leader and a quorum.
	_, err = cli.Get(ctx, "health")
	out.Healthy = err == nil
	return out, nil
}

// ListMembers returns the members sorted by id.
func ListMembers(ctx context.Context, cli *clientv3.Client) ([]Member, error) {
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	return convertMembers(resp.Members), nil
}

func convertMembers(in []*etcdserverpb.Member) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// AddLearner adds a non-voting member. A learner never counts towards
// quorum, so adding one cannot cost the cluster its quorum; it is refused if
// a learner already exists (etcd allows one at a time, and a second surge
// means an earlier step was not cleaned up).
func AddLearner(ctx context.Context, cli *clientv3.Client, peerURLs []string) (Member, []Member, error) {
	members, err := ListMembers(ctx, cli)
	if err != nil {
		return Member{}, nil, err
	}
	for _, m := range members {
		for _, u := range m.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return m, members, nil // retried add: the member is already there
			}
		}
	}
	for _, m := range members {
		if m.IsLearner {
			return Member{}, nil, fmt.Errorf("%w: learner %x (%s) already exists; promote or remove it first", ErrQuorumAtRisk, m.ID, m.Name)
		}
	}
	resp, err := cli.MemberAddAsLearner(ctx, peerURLs)
	if err != nil {
		return Member{}, nil, fmt.Errorf("adding learner %v: %w", peerURLs, err)
	}
	added := convertMembers([]*etcdserverpb.Member{resp.Member})[0]
	return added, convertMembers(resp.Members), nil
}

// Promote promotes a learner. etcd itself refuses while the learner lags
// behind the leader; the error says so.
func Promote(ctx context.Context, cli *clientv3.Client, id uint64) ([]Member, error) {
	members, err := ListMembers(ctx, cli)
	if err != nil {
		return nil, err
	}
	m, ok := find(members, id)
	if !ok {
		return nil, fmt.Errorf("%w: %x", ErrMemberNotFound, id)
	}
	if !m.IsLearner {
		return members, nil // already a voter: a retried promote
	}
	resp, err := cli.MemberPromote(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("promoting learner %x: %w", id, err)
	}
	return convertMembers(resp.Members), nil
}

// Remove removes a member. Removing a voter is refused when the remaining
// voters would be fewer than two: with one voter left any further failure
// loses the cluster, and the procedures never need that.
func Remove(ctx context.Context, cli *clientv3.Client, id uint64) ([]Member, error) {
	members, err := ListMembers(ctx, cli)
	if err != nil {
		return nil, err
	}
	m, ok := find(members, id)
	if !ok {
		return members, nil // already gone: a retried remove
	}
	if !m.IsLearner {
		voters := 0
		for _, o := range members {
			if !o.IsLearner {
				voters++
			}
		}
		if voters-1 < 2 {
			return nil, fmt.Errorf("%w: removing voter %x would leave %d voting member(s)", ErrQuorumAtRisk, id, voters-1)
		}
	}
	resp, err := cli.MemberRemove(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("removing member %x: %w", id, err)
	}
	return convertMembers(resp.Members), nil
}

// MoveLeader transfers leadership to target. The request must reach the
// current leader, so it is sent through a client dialed to the leader's
// client URLs.
func MoveLeader(ctx context.Context, cfg Config, cli *clientv3.Client, target uint64) (uint64, error) {
	st, err := GetStatus(ctx, cli, cfg.Endpoint)
	if err != nil {
		return 0, err
	}
	if st.LeaderID == target {
		return target, nil
	}
	t, ok := find(st.Members, target)
	if !ok || t.IsLearner {
		return 0, fmt.Errorf("%w: %x is not a voting member", ErrMemberNotFound, target)
	}
	leader, ok := find(st.Members, st.LeaderID)
	if !ok || len(leader.ClientURLs) == 0 {
		return 0, fmt.Errorf("leader %x unknown or without client URLs", st.LeaderID)
	}
	lcli, err := cfg.Dial(ctx, leader.ClientURLs...)
	if err != nil {
		return 0, err
	}
	defer lcli.Close()
	if _, err := lcli.MoveLeader(ctx, target); err != nil {
		return 0, fmt.Errorf("moving leadership from %x to %x: %w", st.LeaderID, target, err)
	}
	after, err := lcli.Status(ctx, leader.ClientURLs[0])
	if err != nil {
		return 0, fmt.Errorf("reading leader after transfer: %w", err)
	}
	return after.Leader, nil
}

func find(members []Member, id uint64) (Member, bool) {
	for _, m := range members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
