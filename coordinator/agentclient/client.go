// Package agentclient is the coordinator's side of the agent contract: it
// dials triad-agents over mutual TLS and stamps every mutating request with
// the operation's fencing header. It never touches a node directly.
package agentclient

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Client is a connection to one agent.
type Client struct {
	agentv1.AgentServiceClient
	conn *grpc.ClientConn
	// Endpoint is the host:port the client dials.
	Endpoint string
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
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))}, opts...)
	conn, err := grpc.NewClient(endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("dialing agent %s: %w", endpoint, err)
	}
	return &Client{AgentServiceClient: agentv1.NewAgentServiceClient(conn), conn: conn, Endpoint: endpoint}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
