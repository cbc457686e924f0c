package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// tagLBGroup marks the security groups the plugin creates for its load
// balancers; the value is the load balancer's name.
const tagLBGroup = tagPrefix + "load-balancer"

// clientCIDRs is who may reach a load balancer's listener: the configured
// CIDRs, else the VPC's blocks (internal) or what the backends' security
// groups allowed on the backend port (public) — the single node's
// exposure, kept. A public load balancer open to the whole internet is
// refused unless the configuration says it is meant.
func (p *Provider) clientCIDRs(ctx context.Context, scheme sdk.LoadBalancerScheme, backends []string, port int) ([]string, error) {
	if scheme == sdk.SchemeInternal {
		if len(p.cfg.InternalCIDRs) > 0 {
			return p.cfg.InternalCIDRs, nil
		}
		out, err := p.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{p.cfg.VPCID}})
		if err != nil {
			return nil, mapError(err)
		}
		var cidrs []string
		for _, v := range out.Vpcs {
			for _, b := range v.CidrBlockAssociationSet {
				cidrs = append(cidrs, aws.ToString(b.CidrBlock))
			}
			if len(v.CidrBlockAssociationSet) == 0 && v.CidrBlock != nil {
				cidrs = append(cidrs, aws.ToString(v.CidrBlock))
			}
		}
		if len(cidrs) == 0 {
			return nil, fmt.Errorf("%w: VPC %s reports no CIDR block; set cloud.config.internalCIDRs", sdk.ErrFailedPrecondition, p.cfg.VPCID)
		}
		return cidrs, nil
	}
	cidrs := p.cfg.PublicCIDRs
	if len(cidrs) == 0 {
		groups, err := p.groupsOf(ctx, backends...)
		if err != nil {
			return nil, err
		}
		rules, err := p.ingress(ctx, groups)
		if err != nil {
			return nil, err
		}
		cidrs = allowedCIDRs(rules, port)
		if len(cidrs) == 0 {
			return nil, fmt.Errorf("%w: the security groups %v of the control-plane instances allow tcp %d from no CIDR block, so a public load balancer would admit nobody; set cloud.config.publicCIDRs to who may reach the API", sdk.ErrFailedPrecondition, groups, port)
		}
	}
	if openToAll(cidrs) && !p.cfg.AllowPublicFromAnywhere {
		return nil, fmt.Errorf("%w: the public load balancer would admit %v on tcp %d, the whole internet (taken from %s); set cloud.config.publicCIDRs to who may reach the API, or allowPublicFromAnywhere: true if that is meant",
			sdk.ErrFailedPrecondition, cidrs, port, map[bool]string{true: "cloud.config.publicCIDRs", false: "the instances' security groups"}[len(p.cfg.PublicCIDRs) > 0])
	}
	return cidrs, nil
}

// ensureLBGroup returns the load balancer's security group, creating it
// (named like the load balancer, so a retry finds it) and admitting cidrs
// on the listener port.
func (p *Provider) ensureLBGroup(ctx context.Context, name string, req sdk.CreateLoadBalancerRequest, cidrs []string) (string, error) {
	found, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("group-name"), Values: []string{name}}, {Name: aws.String("vpc-id"), Values: []string{p.cfg.VPCID}},
	}})
	if err != nil {
		return "", mapError(err)
	}
	var id string
	var have []types.IpPermission
	if len(found.SecurityGroups) > 0 {
		id, have = aws.ToString(found.SecurityGroups[0].GroupId), found.SecurityGroups[0].IpPermissions
	} else {
		out, err := p.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
			GroupName:   aws.String(name),
			Description: aws.String("triad: clients of load balancer " + req.Name),
			VpcId:       aws.String(p.cfg.VPCID),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup,
				Tags: tagsOf(ec2Tag, req.Labels, "Name", req.Name, tagToken, req.IdempotencyToken, tagLBGroup, name)}},
		})
		if err != nil {
			return "", mapError(err)
		}
		id = aws.ToString(out.GroupId)
	}
	var missing []types.IpRange
	for _, c := range cidrs {
		if !slices.Contains(allowedCIDRs(have, req.ListenerPort), c) {
			missing = append(missing, types.IpRange{CidrIp: aws.String(c), Description: aws.String("triad: " + req.Name)})
		}
	}
	if len(missing) > 0 {
		_, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(id),
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(req.ListenerPort)),
				ToPort: aws.Int32(int32(req.ListenerPort)), IpRanges: missing}},
		})
		if err = mapError(err); err != nil && !errors.Is(err, sdk.ErrAlreadyExists) {
			return "", err
		}
	}
	return id, nil
}

// deleteLBGroups deletes the plugin's security groups among groups once
// nothing uses them (an NLB's interfaces outlive it for a while), and any
// the plugin left behind earlier whose load balancer is gone.
func (p *Provider) deleteLBGroups(ctx context.Context, groups []string) error {
	out, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("tag-key"), Values: []string{tagLBGroup}}, {Name: aws.String("vpc-id"), Values: []string{p.cfg.VPCID}},
	}})
	if err != nil {
		return mapError(err)
	}
	for _, g := range out.SecurityGroups {
		id, lbName := aws.ToString(g.GroupId), tagMap(g.Tags)[tagLBGroup]
		if !slices.Contains(groups, id) {
			// Another load balancer's, or an orphan from an interrupted
			// delete: only an orphan goes.
			if _, err := p.describeLoadBalancer(ctx, &elb.DescribeLoadBalancersInput{Names: []string{lbName}}, lbName); !errors.Is(err, sdk.ErrNotFound) {
				continue
			}
		}
		err := p.waitFor(ctx, "security group "+id+" to be deleted", func() (bool, error) {
			_, err := p.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(id)})
			switch err = mapError(err); {
			case err == nil, errors.Is(err, sdk.ErrNotFound):
				return true, nil
			case errors.Is(err, sdk.ErrFailedPrecondition): // DependencyViolation: an interface still uses it
				return false, nil
			}
			return false, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// groupsOf returns the security groups of instances, sorted, unique.
func (p *Provider) groupsOf(ctx context.Context, ids ...string) ([]string, error) {
	var groups []string
	for _, id := range ids {
		in, err := p.describeInstance(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, g := range in.SecurityGroups {
			if !slices.Contains(groups, aws.ToString(g.GroupId)) {
				groups = append(groups, aws.ToString(g.GroupId))
			}
		}
	}
	slices.Sort(groups)
	return groups, nil
}

// ingress returns the inbound rules of groups.
func (p *Provider) ingress(ctx context.Context, groups []string) ([]types.IpPermission, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	out, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: groups})
	if err != nil {
		return nil, mapError(err)
	}
	var rules []types.IpPermission
	for _, g := range out.SecurityGroups {
		rules = append(rules, g.IpPermissions...)
	}
	return rules, nil
}

// coversPort: the rule admits TCP to port.
func coversPort(r types.IpPermission, port int) bool {
	switch aws.ToString(r.IpProtocol) {
	case "-1", "all":
		return true
	case "tcp", "6":
		return int(aws.ToInt32(r.FromPort)) <= port && port <= int(aws.ToInt32(r.ToPort))
	}
	return false
}

// allowedCIDRs lists the IPv4 blocks rules admit on tcp port.
func allowedCIDRs(rules []types.IpPermission, port int) []string {
	var out []string
	for _, r := range rules {
		if !coversPort(r, port) {
			continue
		}
		for _, ip := range r.IpRanges {
			if c := aws.ToString(ip.CidrIp); !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// admits: some rule admits tcp port from one of groups, or from blocks
// containing every one of sources.
func admits(rules []types.IpPermission, port int, groups []string, sources []netip.Prefix) bool {
	for _, r := range rules {
		if !coversPort(r, port) {
			continue
		}
		for _, pair := range r.UserIdGroupPairs {
			if slices.Contains(groups, aws.ToString(pair.GroupId)) {
				return true
			}
		}
	}
	var blocks []netip.Prefix
	for _, c := range allowedCIDRs(rules, port) {
		if b, err := netip.ParsePrefix(c); err == nil {
			blocks = append(blocks, b)
		}
	}
	for _, s := range sources {
		if !slices.ContainsFunc(blocks, func(b netip.Prefix) bool { return b.Bits() <= s.Bits() && b.Contains(s.Addr()) }) {
			return false
		}
	}
	return len(sources) > 0
}

// CheckControlPlane implements sdk.ControlPlaneChecker, changing nothing:
// the zones have subnets; the security groups the new nodes get admit
// node ports between the nodes (a rule from one of those groups, or from
// the zones' subnets) and load-balancer ports from the zones' subnets (an
// NLB's health checks and, with client IP preservation off, its traffic
// come from its nodes' private addresses there); the public load
// balancer's exposure; and the instance's volumes a clone copies. The first
// load-balancer port is the API's.
func (p *Provider) CheckControlPlane(ctx context.Context, req sdk.CheckControlPlaneRequest) ([]sdk.Check, error) {
	var checks []sdk.Check
	var subnetIDs []string
	for _, z := range req.Zones {
		id, ok := p.cfg.Subnets[z]
		checks = append(checks, sdk.Check{Name: "zone " + z + " has a subnet", OK: ok,
			Detail: map[bool]string{true: id, false: "cloud.config.subnets has no subnet for " + z}[ok]})
		if ok {
			subnetIDs = append(subnetIDs, id)
		}
	}
	var sources []netip.Prefix
	var sourceNames []string
	if len(subnetIDs) > 0 {
		out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: subnetIDs})
		if err != nil {
			return nil, mapError(err)
		}
		for _, s := range out.Subnets {
			if b, err := netip.ParsePrefix(aws.ToString(s.CidrBlock)); err == nil {
				sources, sourceNames = append(sources, b), append(sourceNames, b.String())
			}
		}
	}
	slices.Sort(sourceNames)
	groups := p.cfg.SecurityGroupIDs
	if len(groups) == 0 {
		var err error
		if groups, err = p.groupsOf(ctx, req.InstanceID); err != nil {
			return nil, err
		}
	}
	rules, err := p.ingress(ctx, groups)
	if err != nil {
		return nil, err
	}
	subnets := strings.Join(sourceNames, ", ")
	for _, port := range req.NodePorts {
		ok := admits(rules, port, groups, sources)
		c := sdk.Check{Name: fmt.Sprintf("tcp %d between control-plane nodes", port), OK: ok,
			Detail: fmt.Sprintf("security groups %v admit it", groups)}
		if !ok {
			c.Detail = fmt.Sprintf("security groups %v (the new nodes') admit no tcp %d from the other nodes: add an inbound rule tcp %d from %s (or from %s)",
				groups, port, port, groups[0], subnets)
		}
		checks = append(checks, c)
	}
	for _, port := range req.LoadBalancerPorts {
		ok := admits(rules, port, nil, sources)
		c := sdk.Check{Name: fmt.Sprintf("tcp %d from the load balancers", port), OK: ok,
			Detail: fmt.Sprintf("security groups %v admit it from %s", groups, subnets)}
		if !ok {
			c.Detail = fmt.Sprintf("security groups %v admit no tcp %d from the load balancers' subnets: add an inbound rule tcp %d from %s (the NLBs' health checks and traffic come from their addresses there)",
				groups, port, port, subnets)
		}
		checks = append(checks, c)
	}
	if len(req.LoadBalancerPorts) > 0 {
		api := req.LoadBalancerPorts[0]
		c := sdk.Check{Name: "public load balancer exposure", OK: true}
		cidrs, err := p.clientCIDRs(ctx, sdk.SchemePublic, []string{req.InstanceID}, api)
		switch {
		case errors.Is(err, sdk.ErrFailedPrecondition):
			c.OK, c.Detail = false, err.Error()
		case err != nil:
			return nil, err
		default:
			c.Detail = "tcp " + strconv.Itoa(api) + " from " + strings.Join(cidrs, ", ")
		}
		checks = append(checks, c)
	}
	return append(checks, p.checkVolumes(ctx, req.InstanceID)...), nil
}
