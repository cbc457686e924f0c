package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	agentauth "github.com/triad-k8s/triad/agent/auth"
	"github.com/triad-k8s/triad/agent/fencing"
	"github.com/triad-k8s/triad/agent/opjournal"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// interceptors returns the server's interceptor chains, outermost first:
// logging sees every call with its final code, recovery turns a panic
// anywhere below into Internal, auth checks the caller's role, fencing checks
// the request header of every RPC that carries one.
func interceptors(logger *slog.Logger, fence *fencing.Store, journal *opjournal.Journal) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	// Only the end of each call is logged, never payloads: snapshots hold
	// every Secret of the cluster.
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	recoverOpts := []recovery.Option{recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in RPC handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error in triad-agent (logged)")
	})}
	unary := []grpc.UnaryServerInterceptor{
		logging.UnaryServerInterceptor(slogAdapter(logger), logOpts...),
		recovery.UnaryServerInterceptor(recoverOpts...),
		auth.UnaryServerInterceptor(agentauth.Authenticate),
		fencingUnary(fence),
		actOnceUnary(journal),
	}
	stream := []grpc.StreamServerInterceptor{
		logging.StreamServerInterceptor(slogAdapter(logger), logOpts...),
		recovery.StreamServerInterceptor(recoverOpts...),
		auth.StreamServerInterceptor(agentauth.Authenticate),
		fencingStream(fence),
	}
	return unary, stream
}

func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// headerOf returns the request header a message carries: directly, or in the
// metadata that opens a client stream. ok is false for messages that carry
// none (read-only RPCs, and data chunks after the first stream message).
func headerOf(msg any) (h *agentv1.RequestHeader, ok bool) {
	switch m := msg.(type) {
	case interface {
		GetHeader() *agentv1.RequestHeader
	}:
		return m.GetHeader(), true
	case *agentv1.UploadSnapshotRequest:
		if md := m.GetMetadata(); md != nil {
			return md.GetHeader(), true
		}
	}
	return nil, false
}

// admit checks a request header against the fencing store.
func admit(fence *fencing.Store, h *agentv1.RequestHeader) error {
	if h == nil {
		return status.Error(codes.InvalidArgument, "request header (operation_id, epoch, cluster) is required")
	}
	err := fence.Admit(fencing.Header{OperationID: h.GetOperationId(), Epoch: h.GetEpoch(), Cluster: h.GetCluster()})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fencing.ErrInvalidHeader):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, fencing.ErrStaleEpoch):
		return fenced(err, fencing.ReasonStaleEpoch)
	case errors.Is(err, fencing.ErrWrongCluster):
		return fenced(err, fencing.ReasonWrongCluster)
	default:
		return status.Errorf(codes.Unavailable, "checking fencing epoch: %v", err)
	}
}

// fenced is a refusal by the fencing store: FailedPrecondition with an
// ErrorInfo detail naming the reason, for the coordinator to decode.
func fenced(err error, reason string) error {
	st := status.New(codes.FailedPrecondition, err.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: fencing.ErrorDomain}); derr == nil {
		return d.Err()
	}
	return st.Err()
}

func fencingUnary(fence *fencing.Store) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if h, ok := headerOf(req); ok {
			if err := admit(fence, h); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
}

// fencingStream checks the first message of client streams (the upload
// metadata) and the request of server streams that carry a header.
func fencingStream(fence *fencing.Store) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &fencedStream{ServerStream: ss, fence: fence, mustCarry: !agentauth.ReadOnly(info.FullMethod)})
	}
}

type fencedStream struct {
	grpc.ServerStream
	fence     *fencing.Store
	mustCarry bool
	checked   bool
}

func (s *fencedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checked {
		return nil
	}
	s.checked = true
	h, ok := headerOf(m)
	if !ok && !s.mustCarry {
		return nil
	}
	return admit(s.fence, h)
}

// actOnceMethods are the RPCs whose repetition is not harmless, so a retry
// with the same operation id and request must return the first result
// rather than act again. The other mutating RPCs are idempotent by nature
// (set the gate, stop a pod, promote a member) and may be repeated on
// purpose within one operation.
var actOnceMethods = map[string]bool{
	agentv1.AgentService_RestoreSnapshot_FullMethodName:       true,
	agentv1.AgentService_AddEtcdMember_FullMethodName:         true,
	agentv1.AgentService_IssueNodeCertificates_FullMethodName: true,
	agentv1.AgentService_ReconfigureManifests_FullMethodName:  true,
}

func actOnceUnary(journal *opjournal.Journal) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		h, ok := headerOf(req)
		msg, isProto := req.(proto.Message)
		if !actOnceMethods[info.FullMethod] || !ok || !isProto {
			return handler(ctx, req)
		}
		key, err := opjournal.Key(h.GetOperationId(), info.FullMethod, msg)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "computing journal key: %v", err)
		}
		if first, found, err := journal.Lookup(key); err != nil {
			return nil, status.Errorf(codes.Unavailable, "reading operation journal: %v", err)
		} else if found {
			return first, nil
		}
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, err
		}
		if err := journal.Record(key, resp.(proto.Message)); err != nil {
			// The action happened but a retry would repeat it: say so.
			return nil, status.Errorf(codes.Internal, "%s succeeded but its result could not be journaled: %v", info.FullMethod, err)
		}
		return resp, nil
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
