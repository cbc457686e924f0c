package sdk

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a caller acts on. Wrap them (fmt.Errorf("...: %w", sdk.ErrNotFound))
// so the message says what happened; the sentinel survives the wire.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrQuota              = errors.New("quota exceeded")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrUnavailable        = errors.New("unavailable")
	// ErrPermissionDenied: the cloud refused the plugin's credentials the
	// call; the message names the missing permission.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnimplemented: the plugin does not implement an optional method.
	ErrUnimplemented = errors.New("not implemented by the plugin")
)

var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrQuota, codes.ResourceExhausted},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrUnavailable, codes.Unavailable},
	{ErrPermissionDenied, codes.PermissionDenied},
	{ErrUnimplemented, codes.Unimplemented},
}

// toGRPC turns a provider error into a status with the matching code.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// fromGRPC turns a status back into an error wrapping the sentinel.
func fromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, e := range errorCodes {
		if st.Code() == e.code {
			return &wireError{sentinel: e.err, msg: st.Message()}
		}
	}
	return fmt.Errorf("cloud plugin: %s: %s", st.Code(), st.Message())
}

// wireError carries a plugin's message and its sentinel across the wire.
type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.sentinel }
