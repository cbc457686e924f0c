package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/agent/manifests"
	"github.com/triad-k8s/triad/agent/nodecerts"
	"github.com/triad-k8s/triad/agent/staticpods"
)

// toStatus maps the capability packages' sentinel errors to gRPC codes, so
// callers can act on the code and never see a bare Unknown. The message
// keeps the whole chain of what was being done.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, staticpods.ErrTimeout):
		code = codes.DeadlineExceeded
	case errors.Is(err, etcdsnap.ErrInvalidArgument), errors.Is(err, staticpods.ErrInvalidName),
		errors.Is(err, nodecerts.ErrInvalidArgument), errors.Is(err, manifests.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, etcdsnap.ErrNotFound), errors.Is(err, etcd.ErrMemberNotFound), errors.Is(err, staticpods.ErrUnknownPod):
		code = codes.NotFound
	case errors.Is(err, etcdsnap.ErrCorrupt):
		code = codes.DataLoss
	case errors.Is(err, etcdsnap.ErrDataDirInUse), errors.Is(err, etcdsnap.ErrUnsupportedVersion), errors.Is(err, etcd.ErrQuorumAtRisk):
		code = codes.FailedPrecondition
	case errors.Is(err, etcd.ErrUnreachable):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}
