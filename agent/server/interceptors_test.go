package server

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A panicking handler must not take the agent down; the caller gets
// Internal and the panic is logged.
func TestPanicInHandlerBecomesInternal(t *testing.T) {
	unary, _ := interceptors(discardLogger(), nil, nil)
	var recoveryInterceptor grpc.UnaryServerInterceptor = unary[1]
	_, err := recoveryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/y"},
		func(context.Context, any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
}
