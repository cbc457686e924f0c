// Package aws is triad's AWS cloud plugin (binary triad-cloud-aws), built
// on aws-sdk-go-v2. It is also the model for third-party plugins: one file
// per resource kind, every call safe to retry, AWS errors mapped to the
// SDK's.
//
// How triad's resources map to AWS:
//
//   - instance: an EC2 instance in one of the configured subnets; its data
//     disk is the EBS volume at Config.DataDevice.
//   - disk snapshot: a clone of the whole stopped instance, an AMI made by
//     CreateImage from every EBS volume (root and data), tagged with the
//     source instance and image; an instance created from it boots the
//     clone, or another image plus the clone's non-root volumes.
//   - public address: an Elastic IP (id eipalloc-…).
//   - private address: one of Config.PrivateAddresses, a secondary private
//     IP of an instance's primary interface (id = the IP). See README.md for
//     why a primary private IP cannot be one.
//   - load balancer: a Network Load Balancer with one subnet mapping per
//     configured zone (the address in its own zone's), a security group of
//     its own, a TCP target group of instances health-checked over HTTPS on
//     the agent's gate, and, while traffic is enabled, a TCP listener
//     forwarding to it.
//
// Idempotency: RunInstances takes the caller's token as ClientToken;
// CreateImage has none, so the clone is named after a hash of the token and
// looked up first; load balancers, target groups and their security groups
// are named after a hash of the token too.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Version of the plugin build; set with -ldflags at release.
var Version = "dev"

// Provider implements sdk.Provider on EC2 and ELBv2.
type Provider struct {
	cfg Config
	ec2 *ec2.Client
	elb *elb.Client
}

var _ sdk.Provider = (*Provider)(nil)

// New builds a provider from the plugin configuration. Credentials come
// from the SDK's standard chain (environment, shared config and profile,
// web identity, container and instance roles); extra load options are for
// tests.
func New(ctx context.Context, cfg Config, opts ...func(*awsconfig.LoadOptions) error) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	load := []func(*awsconfig.LoadOptions) error{
		// Standard retries (throttling, 5xx, connection resets) with
		// exponential jitter backoff, more attempts than the SDK's 3: a
		// migration step should ride out a throttled burst, not roll back.
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff.Duration
				o.Backoff = retry.NewExponentialJitterBackoff(cfg.MaxBackoff.Duration)
			})
		}),
	}
	if cfg.Region != "" {
		load = append(load, awsconfig.WithRegion(cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, append(load, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("aws plugin: loading the SDK configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("aws plugin: no region: set cloud.config.region, or AWS_REGION in cloud.env")
	}
	return &Provider{
		cfg: cfg,
		ec2: ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
			if ep := cfg.Endpoints["ec2"]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
		elb: elb.NewFromConfig(awsCfg, func(o *elb.Options) {
			if ep := cfg.Endpoints["elasticloadbalancing"]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
	}, nil
}

// PluginInfo implements sdk.Provider. Images are free-form AMI ids.
func (p *Provider) PluginInfo(ctx context.Context) (sdk.PluginInfo, error) {
	return sdk.PluginInfo{Name: "aws", Version: Version, APIVersions: []string{sdk.APIVersion}, Zones: p.cfg.zones(),
		RecommendedDrainDelay: p.cfg.DrainDelay.Duration,
		// The shortest NLB health check (5 s) failing twice, plus time for
		// the NLB's nodes to act on the verdict.
		RecommendedAPIServerShutdownDelay: nlbMinInterval*2 + 5*time.Second,
	}, nil
}

// nlbMinInterval is the shortest health-check interval an NLB target
// group takes.
const nlbMinInterval = 5 * time.Second

// Tags the plugin keeps for itself; they never show up as labels.
const (
	tagPrefix         = "triad-aws:"
	tagToken          = tagPrefix + "idempotency-token"
	tagSourceInstance = tagPrefix + "source-instance"
	tagSourceImage    = tagPrefix + "source-image"
	tagName           = tagPrefix + "name"
	tagTargetGroup    = tagPrefix + "target-group"
	tagListenerPort   = tagPrefix + "listener-port"
)

// labelsOf returns the labels among AWS tags: all but Name, the plugin's
// own and AWS's.
func labelsOf(tags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		if k == "Name" || strings.HasPrefix(k, tagPrefix) || strings.HasPrefix(k, "aws:") {
			continue
		}
		out[k] = v
	}
	return out
}

// checkToken enforces the contract's 1 to 64 characters (also EC2's
// ClientToken limit: 64 ASCII characters).
func checkToken(token string) error {
	if token == "" || len(token) > 64 {
		return fmt.Errorf("%w: idempotency token must be 1 to 64 characters", sdk.ErrInvalidArgument)
	}
	for _, r := range token {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("%w: idempotency token must be printable ASCII", sdk.ErrInvalidArgument)
		}
	}
	return nil
}

// isPrivateAddress reports whether id is one of the managed private IPs.
func (p *Provider) isPrivateAddress(id string) bool {
	return slices.Contains(p.cfg.PrivateAddresses, id)
}

// delays are the SDK waiters' minimum and maximum delay between polls.
func (p *Provider) delays() (time.Duration, time.Duration) {
	return p.cfg.PollInterval.Duration, 4 * p.cfg.PollInterval.Duration
}

// waitFor polls cond every PollInterval until it holds, fails, or
// WaitTimeout passes; what names the wait in the timeout error.
func (p *Provider) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.WaitTimeout.Duration)
	defer cancel()
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for %s: %v", sdk.ErrUnavailable, what, ctx.Err())
		case <-time.After(p.cfg.PollInterval.Duration):
		}
	}
}

// subnetFor returns the configured subnet whose CIDR holds ip.
func (p *Provider) subnetFor(ctx context.Context, ip string) (string, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("%w: %q is not an IP address", sdk.ErrInvalidArgument, ip)
	}
	var ids []string
	for _, zone := range p.cfg.zones() {
		ids = append(ids, p.cfg.Subnets[zone])
	}
	out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: ids})
	if err != nil {
		return "", mapError(err)
	}
	for _, s := range out.Subnets {
		if prefix, err := netip.ParsePrefix(aws.ToString(s.CidrBlock)); err == nil && prefix.Contains(addr) {
			return aws.ToString(s.SubnetId), nil
		}
	}
	return "", fmt.Errorf("%w: %s is in none of the configured subnets %v", sdk.ErrInvalidArgument, ip, ids)
}
