package aws

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// AWS error codes (EC2 and ELBv2 query APIs) and the SDK error each one
// is. A code not listed stays an internal error with AWS's message.
var errorCodes = map[string]error{
	// Missing resources.
	"InvalidInstanceID.NotFound":   sdk.ErrNotFound,
	"InvalidInstanceID.Malformed":  sdk.ErrNotFound,
	"InvalidSnapshot.NotFound":     sdk.ErrNotFound,
	"InvalidSnapshotID.Malformed":  sdk.ErrNotFound,
	"InvalidAllocationID.NotFound": sdk.ErrNotFound,
	"InvalidAddress.NotFound":      sdk.ErrNotFound,
	"InvalidAMIID.NotFound":        sdk.ErrNotFound,
	"InvalidAMIID.Malformed":       sdk.ErrNotFound,
	"InvalidAMIID.Unavailable":     sdk.ErrNotFound, // deregistered
	"InvalidVolume.NotFound":       sdk.ErrNotFound,
	"LoadBalancerNotFound":         sdk.ErrNotFound,
	"TargetGroupNotFound":          sdk.ErrNotFound,
	"ListenerNotFound":             sdk.ErrNotFound,
	"InvalidGroup.NotFound":        sdk.ErrNotFound,
	"InvalidVpcID.NotFound":        sdk.ErrNotFound,
	// A retried create whose parameters differ from the first call's.
	"IdempotentParameterMismatch": sdk.ErrAlreadyExists,
	"DuplicateLoadBalancerName":   sdk.ErrAlreadyExists,
	"DuplicateTargetGroupName":    sdk.ErrAlreadyExists,
	"DuplicateListener":           sdk.ErrAlreadyExists,
	"InvalidAMIName.Duplicate":    sdk.ErrAlreadyExists,
	"InvalidGroup.Duplicate":      sdk.ErrAlreadyExists,
	"InvalidPermission.Duplicate": sdk.ErrAlreadyExists,
	// Wrong state.
	"IncorrectInstanceState":      sdk.ErrFailedPrecondition,
	"IncorrectState":              sdk.ErrFailedPrecondition,
	"InvalidIPAddress.InUse":      sdk.ErrFailedPrecondition,
	"Resource.AlreadyAssociated":  sdk.ErrFailedPrecondition,
	"ResourceInUse":               sdk.ErrFailedPrecondition,
	"InvalidSnapshot.InUse":       sdk.ErrFailedPrecondition,
	"InvalidConfigurationRequest": sdk.ErrFailedPrecondition,
	"InvalidTarget":               sdk.ErrFailedPrecondition, // not running
	"DependencyViolation":         sdk.ErrFailedPrecondition, // a group still in use
	// Quota and capacity.
	"InstanceLimitExceeded":             sdk.ErrQuota,
	"VcpuLimitExceeded":                 sdk.ErrQuota,
	"InsufficientInstanceCapacity":      sdk.ErrQuota,
	"SnapshotLimitExceeded":             sdk.ErrQuota,
	"PrivateIpAddressLimitExceeded":     sdk.ErrQuota,
	"TooManyLoadBalancers":              sdk.ErrQuota,
	"TooManyTargetGroups":               sdk.ErrQuota,
	"TooManyTargets":                    sdk.ErrQuota,
	"InsufficientFreeAddressesInSubnet": sdk.ErrQuota,
	// Bad input.
	"InvalidParameterValue":       sdk.ErrInvalidArgument,
	"InvalidParameterCombination": sdk.ErrInvalidArgument,
	"InvalidParameter":            sdk.ErrInvalidArgument,
	"MissingParameter":            sdk.ErrInvalidArgument,
	"ValidationError":             sdk.ErrInvalidArgument,
	"InvalidSubnet":               sdk.ErrInvalidArgument,
	"InvalidUserData.Malformed":   sdk.ErrInvalidArgument,
	"InvalidAMIName.Malformed":    sdk.ErrInvalidArgument,
	"InvalidBlockDeviceMapping":   sdk.ErrInvalidArgument,
	// IAM.
	"UnauthorizedOperation": sdk.ErrPermissionDenied,
	"AccessDenied":          sdk.ErrPermissionDenied,
	"AccessDeniedException": sdk.ErrPermissionDenied,
	"OperationNotPermitted": sdk.ErrFailedPrecondition,
	// Still failing after the SDK's retries.
	"RequestLimitExceeded": sdk.ErrUnavailable,
	"Throttling":           sdk.ErrUnavailable,
	"ServiceUnavailable":   sdk.ErrUnavailable,
	"InternalError":        sdk.ErrUnavailable,
	"Unavailable":          sdk.ErrUnavailable,
}

// iamPrefix is the IAM service prefix of each SDK service id.
var iamPrefix = map[string]string{
	"EC2":                       "ec2",
	"Elastic Load Balancing v2": "elasticloadbalancing",
}

// awsCode returns the AWS error code of err, or "".
func awsCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// action names the IAM action of the failed call, e.g. ec2:RunInstances.
func action(err error) string {
	var oe *smithy.OperationError
	if !errors.As(err, &oe) {
		return ""
	}
	prefix := iamPrefix[oe.ServiceID]
	if prefix == "" {
		prefix = strings.ToLower(oe.ServiceID)
	}
	return prefix + ":" + oe.OperationName
}

// mapError wraps an AWS error in the SDK error a caller acts on, naming
// the call (the IAM action) and keeping AWS's code and message.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	code, act := awsCode(err), action(err)
	var ae smithy.APIError
	msg := err.Error()
	if errors.As(err, &ae) {
		msg = fmt.Sprintf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
	}
	sentinel := errorCodes[code]
	var send *smithyhttp.RequestSendError
	if code == "" && errors.As(err, &send) {
		// No answer from AWS after every attempt (connection refused or
		// reset, DNS, timeout): worth retrying later.
		sentinel = sdk.ErrUnavailable
	}
	switch {
	case sentinel == sdk.ErrPermissionDenied:
		return fmt.Errorf("%w: the plugin's credentials lack %s (add it to the IAM policy; see cloudplugins/aws/README.md): %s", sdk.ErrPermissionDenied, act, msg)
	case sentinel != nil:
		return fmt.Errorf("%w: %s: %s", sentinel, act, msg)
	case act != "":
		return fmt.Errorf("%s: %s", act, msg)
	}
	return err
}
