package auth

import (
	"context"
	"crypto/x509"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// observerMethods are the only RPCs an observer may call: they read health
// and status and change nothing. Every other RPC, including any added to the
// service later, requires the coordinator role; the policy fails closed.
var observerMethods = map[string]bool{
	agentv1.AgentService_GetInfo_FullMethodName:        true,
	agentv1.AgentService_GetHealth_FullMethodName:      true,
	agentv1.AgentService_WatchHealth_FullMethodName:    true,
	agentv1.AgentService_ListStaticPods_FullMethodName: true,
	agentv1.AgentService_GetEtcdStatus_FullMethodName:  true,
	agentv1.AgentService_GetGate_FullMethodName:        true,
}

// ReadOnly reports whether fullMethod is one of the RPCs an observer may call.
func ReadOnly(fullMethod string) bool { return observerMethods[fullMethod] }

// Authorize decides whether role may call fullMethod.
func Authorize(role Role, fullMethod string) error {
	switch {
	case role == RoleCoordinator:
		return nil
	case role == RoleObserver && observerMethods[fullMethod]:
		return nil
	default:
		return fmt.Errorf("role %q may not call %s", role, fullMethod)
	}
}

// Authenticate is a go-grpc-middleware auth.AuthFunc: it reads the role from
// the verified client certificate of the connection and authorizes the
// method being called. The TLS stack has already verified the chain against
// triad's CA; a connection without a verified chain never gets here, but the
// check is repeated so a misconfigured server fails closed.
func Authenticate(ctx context.Context) (context.Context, error) {
	method, ok := grpc.Method(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no method in server context")
	}
	leaf, err := verifiedLeaf(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	role, err := RoleFromCertificate(leaf)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err := Authorize(role, method); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return ctx, nil
}

func verifiedLeaf(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, fmt.Errorf("no peer in context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, fmt.Errorf("connection is not TLS")
	}
	if len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, fmt.Errorf("client presented no certificate verified by triad's CA")
	}
	return info.State.VerifiedChains[0][0], nil
}
