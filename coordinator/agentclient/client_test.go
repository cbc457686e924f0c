package agentclient_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/coordinator/agentclient"
	"github.com/triad-k8s/triad/coordinator/pki"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// TestRedialsAnAgentThatWentAway: while an agent refuses connections (a
// restart, a reboot), the client keeps redialing at short intervals, so
// the first call after the agent is back reaches it. With gRPC's default
// backoff the gaps grow past 4 s within 10 s of refusals (1, 1.6, 2.6,
// 4.1, 6.6 s …) and every call in between fails at once.
func TestRedialsAnAgentThatWentAway(t *testing.T) {
	d := pki.Dir{Path: t.TempDir()}
	if _, err := d.Init("test-ca", 0); err != nil {
		t.Fatal(err)
	}
	iss, err := d.Issue(pki.IssueRequest{Role: agentauth.RoleCoordinator, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: every dial is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var mu sync.Mutex
	var dials []time.Time
	dialer := func(ctx context.Context, a string) (net.Conn, error) {
		mu.Lock()
		dials = append(dials, time.Now())
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	}
	c, err := agentclient.Dial(addr, "c1", agentauth.TLSFiles{CertFile: iss.CertFile, KeyFile: iss.KeyFile, CAFile: iss.CAFile}, grpc.WithContextDialer(dialer))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// As the coordinator's retry loop does: call, fail, call again.
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := c.GetInfo(ctx, &agentv1.GetInfoRequest{}); err == nil {
			t.Fatal("a call succeeded with nothing listening")
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dials) < 6 {
		t.Fatalf("%d dials in 10 s of refusals", len(dials))
	}
	for i := 1; i < len(dials); i++ {
		// MaxDelay 1 s with 20% jitter; the rest is slack for a busy machine.
		if gap := dials[i].Sub(dials[i-1]); gap > 2500*time.Millisecond {
			t.Errorf("dial %d came %s after the one before: a restarted agent would wait that long to be reached", i, gap.Round(time.Millisecond))
		}
	}
}
