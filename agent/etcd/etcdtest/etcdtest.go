// Package etcdtest runs real embedded etcd members for tests, each on its
// own loopback address (127.0.0.x), as control-plane VMs would be.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Member describes one member to start.
type Member struct {
	Name string
	// IP is the member's loopback address, e.g. 127.0.0.11.
	IP string
	// PeerPort and ClientPort; zero picks free ports.
	PeerPort, ClientPort int
	DataDir              string
}

// PeerURL and ClientURL of the member.
func (m Member) PeerURL() string   { return fmt.Sprintf("http://%s:%d", m.IP, m.PeerPort) }
func (m Member) ClientURL() string { return fmt.Sprintf("http://%s:%d", m.IP, m.ClientPort) }

// WithPorts returns m with free ports filled in.
func WithPorts(t testing.TB, m Member) Member {
	t.Helper()
	if m.PeerPort == 0 {
		m.PeerPort = freePort(t, m.IP)
	}
	if m.ClientPort == 0 {
		m.ClientPort = freePort(t, m.IP)
	}
	return m
}

// InitialCluster renders name=peerURL pairs.
func InitialCluster(members ...Member) string {
	parts := make([]string, 0, len(members))
	for _, m := range members {
		parts = append(parts, m.Name+"="+m.PeerURL())
	}
	return strings.Join(parts, ",")
}

// Start starts m with the given initial cluster, state ("new" or
// "existing") and token, and stops it when the test ends. It does not wait
// for quorum: a member of a new multi-member cluster only becomes ready with
// its peers.
func Start(t testing.TB, m Member, initialCluster, state, token string) *embed.Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.DataDir
	cfg.ListenPeerUrls = []url.URL{mustURL(t, m.PeerURL())}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.ListenClientUrls = []url.URL{mustURL(t, m.ClientURL())}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	cfg.InitialCluster = initialCluster
	cfg.ClusterState = state
	cfg.InitialClusterToken = token
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd member %s: %v", m.Name, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// StartSingle starts a one-member cluster and waits until it is ready.
func StartSingle(t testing.TB, m Member) (*embed.Etcd, Member) {
	t.Helper()
	m = WithPorts(t, m)
	e := Start(t, m, InitialCluster(m), embed.ClusterStateFlagNew, "single-"+m.Name)
	WaitReady(t, e)
	return e, m
}

// WaitReady waits until e serves requests.
func WaitReady(t testing.TB, e *embed.Etcd) {
	t.Helper()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("etcd not ready after 60s")
	}
}

// Client returns a client for the given endpoints, closed with the test.
func Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func freePort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mustURL(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}
