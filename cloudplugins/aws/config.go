package aws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config is the plugin's configuration: the `cloud.config` object of a
// triad cluster file, handed to the plugin as JSON.
//
//	cloud:
//	  plugin: /usr/libexec/triad/triad-cloud-aws
//	  env: [AWS_PROFILE]
//	  config:
//	    region: eu-west-1
//	    vpcId: vpc-0a1b2c3d
//	    subnets: {eu-west-1a: subnet-0aa, eu-west-1b: subnet-0bb, eu-west-1c: subnet-0cc}
//	    dataDevice: /dev/sdf
//	    privateAddresses: [10.0.1.10]
type Config struct {
	// Region of every call; empty takes the SDK's (AWS_REGION, profile).
	Region string `json:"region,omitempty"`
	// VPCID scopes every list: instances, interfaces and subnets outside it
	// are invisible to triad.
	VPCID string `json:"vpcId"`
	// Subnets maps each availability zone triad may create instances in
	// to the subnet they go in. These are the plugin's zones.
	Subnets map[string]string `json:"subnets"`
	// DataDevice is the device name of the EBS volume that holds the
	// control plane's state (/etc/kubernetes, /var/lib/etcd). A disk
	// snapshot clones every volume; this one is what an instance booted
	// from another image (a rolling upgrade) still gets from the clone.
	// Default /dev/sdf.
	DataDevice string `json:"dataDevice,omitempty"`
	// DataVolumeType of restored data volumes; default gp3.
	DataVolumeType string `json:"dataVolumeType,omitempty"`
	// PrivateAddresses are the movable private IPs the plugin manages:
	// secondary private IPs of an instance's primary interface (see the
	// README: a primary private IP cannot move).
	PrivateAddresses []string `json:"privateAddresses,omitempty"`
	// InstanceType, SecurityGroupIDs, IAMInstanceProfile and KeyName of new
	// instances; each empty one is copied from the snapshot's source
	// instance.
	InstanceType       string   `json:"instanceType,omitempty"`
	SecurityGroupIDs   []string `json:"securityGroupIds,omitempty"`
	IAMInstanceProfile string   `json:"iamInstanceProfile,omitempty"`
	KeyName            string   `json:"keyName,omitempty"`
	// PublicCIDRs may reach the public load balancer's listener (its
	// security group). Empty: what the control-plane instance's security
	// groups allowed on the API port. 0.0.0.0/0 is refused unless
	// AllowPublicFromAnywhere.
	PublicCIDRs []string `json:"publicCIDRs,omitempty"`
	// AllowPublicFromAnywhere accepts a public load balancer open to
	// 0.0.0.0/0 (or ::/0).
	AllowPublicFromAnywhere bool `json:"allowPublicFromAnywhere,omitempty"`
	// InternalCIDRs may reach the internal load balancer's listener.
	// Empty: the VPC's CIDR blocks.
	InternalCIDRs []string `json:"internalCIDRs,omitempty"`
	// PreserveClientIP per load balancer scheme. Off by default: with it
	// on, a node reaching the API through the internal NLB may be routed
	// to itself and that connection fails (NLB hairpinning); kube-apiserver
	// then sees the NLB's addresses, and the NLB's security group is what
	// restricts clients.
	PreserveClientIP PerScheme `json:"preserveClientIP,omitempty"`
	// DrainDelay is how long a backend keeps its connections after it
	// fails its health check or leaves the load balancer (target group
	// deregistration delay and unhealthy draining interval), and what the
	// plugin advises triad to wait; default 10s.
	DrainDelay Duration `json:"drainDelay,omitempty"`
	// Endpoints override the service endpoints (VPC endpoints, FIPS, or a
	// test server): keys "ec2" and "elasticloadbalancing".
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// MaxAttempts per API call, throttling included; default 10.
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// MaxBackoff caps the jittered exponential backoff between attempts;
	// default 20s (the SDK's).
	MaxBackoff Duration `json:"maxBackoff,omitempty"`
	// PollInterval of the waiters (instance running/stopped, snapshot
	// completed, load balancer active); default 5s.
	PollInterval Duration `json:"pollInterval,omitempty"`
	// WaitTimeout bounds each wait; default 15m (NLBs take minutes).
	WaitTimeout Duration `json:"waitTimeout,omitempty"`
}

// PerScheme is a setting per load balancer scheme.
type PerScheme struct {
	Internal bool `json:"internal,omitempty"`
	Public   bool `json:"public,omitempty"`
}

// Duration is a time.Duration written as "5s" in JSON.
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"5s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseConfig decodes and validates the plugin's JSON configuration,
// reporting every problem at once.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, errors.New("aws plugin: no configuration (cloud.config in the cluster file): vpcId and subnets are required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("aws plugin: cloud.config: %w", err)
	}
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, nil
}

func (c Config) withDefaults() Config {
	if c.DataDevice == "" {
		c.DataDevice = "/dev/sdf"
	}
	if c.DataVolumeType == "" {
		c.DataVolumeType = "gp3"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 10
	}
	if c.MaxBackoff.Duration == 0 {
		c.MaxBackoff.Duration = 20 * time.Second
	}
	if c.PollInterval.Duration == 0 {
		c.PollInterval.Duration = 5 * time.Second
	}
	if c.WaitTimeout.Duration == 0 {
		c.WaitTimeout.Duration = 15 * time.Minute
	}
	if c.DrainDelay.Duration == 0 {
		c.DrainDelay.Duration = 10 * time.Second
	}
	return c
}

func (c Config) validate() error {
	var problems []string
	bad := func(field, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("cloud.config.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !strings.HasPrefix(c.VPCID, "vpc-") {
		bad("vpcId", "required, a VPC id like vpc-0a1b2c3d (got %q)", c.VPCID)
	}
	if len(c.Subnets) == 0 {
		bad("subnets", "required: availability zone -> subnet id, one per zone triad may use")
	}
	for zone, subnet := range c.Subnets {
		if !strings.HasPrefix(subnet, "subnet-") {
			bad("subnets."+zone, "%q is not a subnet id", subnet)
		}
	}
	if !strings.HasPrefix(c.DataDevice, "/dev/") {
		bad("dataDevice", "%q is not a device name like /dev/sdf", c.DataDevice)
	}
	for _, a := range c.PrivateAddresses {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			bad("privateAddresses", "%q is not an IPv4 address", a)
		}
	}
	for field, cidrs := range map[string][]string{"publicCIDRs": c.PublicCIDRs, "internalCIDRs": c.InternalCIDRs} {
		for _, cidr := range cidrs {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				bad(field, "%q is not a CIDR block like 198.51.100.0/24", cidr)
			}
		}
	}
	if len(c.PublicCIDRs) > 0 && openToAll(c.PublicCIDRs) && !c.AllowPublicFromAnywhere {
		bad("publicCIDRs", "0.0.0.0/0 opens the API to the internet; set allowPublicFromAnywhere: true if that is meant")
	}
	if d := c.DrainDelay.Duration; d < 0 || d > time.Hour {
		bad("drainDelay", "must be between 0s and 1h (ELBv2's deregistration delay range), got %s", d)
	}
	for k := range c.Endpoints {
		if k != "ec2" && k != "elasticloadbalancing" {
			bad("endpoints."+k, "unknown service (ec2, elasticloadbalancing)")
		}
	}
	if c.MaxAttempts < 1 {
		bad("maxAttempts", "must be at least 1")
	}
	if c.PollInterval.Duration < 0 || c.WaitTimeout.Duration < c.PollInterval.Duration {
		bad("waitTimeout", "must be longer than pollInterval")
	}
	if len(problems) == 0 {
		return nil
	}
	slices.Sort(problems)
	return fmt.Errorf("aws plugin configuration:\n  %s", strings.Join(problems, "\n  "))
}

// zones returns the configured zones, sorted.
func (c Config) zones() []string {
	var z []string
	for k := range c.Subnets {
		z = append(z, k)
	}
	slices.Sort(z)
	return z
}

// openToAll reports whether cidrs admit every address.
func openToAll(cidrs []string) bool {
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Bits() == 0 {
			return true
		}
	}
	return false
}
