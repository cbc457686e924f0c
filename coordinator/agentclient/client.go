// Package agentclient is the coordinator's side of the agent contract: it
// dials triad-agents over mutual TLS and stamps every mutating request with
// the operation's fencing header. It never touches a node directly.
package agentclient

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/fencing"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Client is a connection to one agent.
type Client struct {
	agentv1.AgentServiceClient
	conn *grpc.ClientConn
	// Endpoint is the host:port the client dials.
	Endpoint string
}

// ConnectParams bound how long a connection to an agent that went away
// (restarted, rebooted, a dropped network) waits before it redials:
// gRPC's default backoff grows to 120 s, so after a few seconds of
// refusals every call fails at once, with the last dial error, for longer
// than the coordinator retries (--agent-timeout) although the agent is back.
// A coordinator talks to a handful of agents: redialing each every second
// or two costs nothing.
var ConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Dial connects to the agent of cluster at endpoint (host:port) with the
// caller's certificate. The agent must present the cluster's agent identity
// signed by the CA in files. The connection is established lazily; the first
// RPC reports handshake failures.
func Dial(endpoint, cluster string, files agentauth.TLSFiles, opts ...grpc.DialOption) (*Client, error) {
	tlsCfg, err := agentauth.ClientTLSConfig(files, cluster)
	if err != nil {
		return nil, err
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), grpc.WithConnectParams(ConnectParams)}, opts...)
	conn, err := grpc.NewClient(endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("dialing agent %s: %w", endpoint, err)
	}
	return &Client{AgentServiceClient: agentv1.NewAgentServiceClient(conn), conn: conn, Endpoint: endpoint}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Fenced reports whether err is an agent's refusal of a request whose
// fencing epoch is older than one it has accepted from another
// coordinator, decoded from the status's ErrorInfo detail.
func Fenced(err error) bool { return fencedFor(err, fencing.ReasonStaleEpoch) }

// WrongCluster reports whether err is an agent's refusal of a request
// meant for another cluster.
func WrongCluster(err error) bool { return fencedFor(err, fencing.ReasonWrongCluster) }

func fencedFor(err error, reason string) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == fencing.ErrorDomain && info.GetReason() == reason {
			return true
		}
	}
	return false
}
