package awsfake

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
)

// seedGroup is the seed instance's security group.
const seedGroup = "sg-0c0ffee0c0ffee000"

// OperatorsCIDR is where the seed's group lets kube-apiserver (6443) and
// SSH be reached from: the operators' network (TEST-NET-2).
const OperatorsCIDR = "198.51.100.0/24"

// vpcCIDR is the seed VPC's block; every subnet is inside it.
const vpcCIDR = "10.0.0.0/16"

type secGroup struct {
	id, name, description, vpc string
	ingress                    []perm
	tags                       map[string]string
}

// perm is one ingress rule: protocol ("tcp", or "-1" for all), port range,
// and sources (CIDRs or security groups).
type perm struct {
	proto    string
	from, to int
	cidrs    []string
	groups   []string
}

type xPerm struct {
	Protocol string      `xml:"ipProtocol"`
	From     *int        `xml:"fromPort,omitempty"`
	To       *int        `xml:"toPort,omitempty"`
	Groups   []xPermPair `xml:"groups>item"`
	Ranges   []xPermCIDR `xml:"ipRanges>item"`
}

type xPermPair struct {
	UserID  string `xml:"userId"`
	GroupID string `xml:"groupId"`
}

type xPermCIDR struct {
	CIDR string `xml:"cidrIp"`
}

type xSecGroup struct {
	OwnerID     string  `xml:"ownerId"`
	GroupID     string  `xml:"groupId"`
	GroupName   string  `xml:"groupName"`
	Description string  `xml:"groupDescription"`
	VpcID       string  `xml:"vpcId"`
	Ingress     []xPerm `xml:"ipPermissions>item"`
	Egress      []xPerm `xml:"ipPermissionsEgress>item"`
	Tags        []xTag  `xml:"tagSet>item"`
}

func (g *secGroup) xml() xSecGroup {
	x := xSecGroup{OwnerID: account, GroupID: g.id, GroupName: g.name, Description: g.description, VpcID: g.vpc, Tags: xTags(g.tags),
		// The default egress rule of a new group: everything out.
		Egress: []xPerm{{Protocol: "-1", Ranges: []xPermCIDR{{"0.0.0.0/0"}}}}}
	for _, p := range g.ingress {
		xp := xPerm{Protocol: p.proto}
		if p.proto != "-1" {
			xp.From, xp.To = &p.from, &p.to
		}
		for _, c := range p.cidrs {
			xp.Ranges = append(xp.Ranges, xPermCIDR{c})
		}
		for _, id := range p.groups {
			xp.Groups = append(xp.Groups, xPermPair{account, id})
		}
		x.Ingress = append(x.Ingress, xp)
	}
	return x
}

// AuthorizeIngress adds an ingress rule to a group, as an operator would:
// source is a CIDR or a security group id; proto "tcp" or "-1".
func (s *Server) AuthorizeIngress(groupID, proto string, from, to int, source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := perm{proto: proto, from: from, to: to}
	if _, err := netip.ParsePrefix(source); err == nil {
		p.cidrs = []string{source}
	} else {
		p.groups = []string{source}
	}
	s.groups[groupID].ingress = append(s.groups[groupID].ingress, p)
}

// SecurityGroupIngress returns a group's ingress rules as
// "proto from-to source" lines, sorted; nil for a missing group.
func (s *Server) SecurityGroupIngress(groupID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[groupID]
	if g == nil {
		return nil
	}
	var out []string
	for _, p := range g.ingress {
		for _, src := range slices.Concat(p.cidrs, p.groups) {
			out = append(out, fmt.Sprintf("%s %d-%d %s", p.proto, p.from, p.to, src))
		}
	}
	slices.Sort(out)
	return out
}

// LoadBalancerSecurityGroups returns the security groups of a load
// balancer.
func (s *Server) LoadBalancerSecurityGroups(arn string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.lbs[arn]; l != nil {
		return slices.Clone(l.groups)
	}
	return nil
}

// ec2Security serves the security-group and VPC calls; known is false for
// any other action.
func (s *Server) ec2Security(action string, q query) (body any, aerr *apiError, known bool) {
	switch action {
	case "DescribeSecurityGroups":
		body, aerr = s.describeGroups(q)
	case "CreateSecurityGroup":
		body, aerr = s.createGroup(q)
	case "AuthorizeSecurityGroupIngress":
		body, aerr = s.authorizeIngress(q)
	case "DeleteSecurityGroup":
		body, aerr = s.deleteGroup(q)
	case "DescribeVpcs":
		for _, id := range q.list("VpcId") {
			if id != s.seed.VPCID {
				return nil, errorf("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id), true
			}
		}
		type xVpc struct {
			ID    string `xml:"vpcId"`
			CIDR  string `xml:"cidrBlock"`
			State string `xml:"state"`
		}
		body = struct {
			Vpcs []xVpc `xml:"vpcSet>item"`
		}{[]xVpc{{s.seed.VPCID, vpcCIDR, "available"}}}
	default:
		return nil, nil, false
	}
	return body, aerr, true
}

func (s *Server) describeGroups(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "group-name", "vpc-id"); err != nil {
		return nil, err
	}
	ids := q.list("GroupId")
	for _, id := range ids {
		if s.groups[id] == nil {
			return nil, errorf("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	}
	var out []xSecGroup
	for _, id := range slices.Sorted(maps.Keys(s.groups)) {
		g := s.groups[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if v, ok := f["group-name"]; ok && !slices.Contains(v, g.name) {
			continue
		}
		if v, ok := f["vpc-id"]; ok && !slices.Contains(v, g.vpc) {
			continue
		}
		if !matchTags(g.tags, f) {
			continue
		}
		out = append(out, g.xml())
	}
	return struct {
		Groups []xSecGroup `xml:"securityGroupInfo>item"`
	}{out}, nil
}

// createGroup: group names are unique per VPC (InvalidGroup.Duplicate);
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
func (s *Server) createGroup(q query) (any, *apiError) {
	name, vpc := q.Get("GroupName"), q.Get("VpcId")
	if vpc != s.seed.VPCID {
		return nil, errorf("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", vpc)
	}
	if len(name) > 255 || name == "" || len(name) >= 3 && name[:3] == "sg-" {
		return nil, errorf("InvalidParameterValue", "Invalid security group name '%s'", name)
	}
	for _, g := range s.groups {
		if g.name == name && g.vpc == vpc {
			return nil, errorf("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
		}
	}
	g := &secGroup{id: s.newID("sg-"), name: name, description: q.Get("GroupDescription"), vpc: vpc, tags: q.tagSpecs()["security-group"]}
	s.groups[g.id] = g
	return struct {
		Return  bool   `xml:"return"`
		GroupID string `xml:"groupId"`
	}{true, g.id}, nil
}

// authorizeIngress: a rule that already exists is refused
// (InvalidPermission.Duplicate), as AWS does;
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AuthorizeSecurityGroupIngress.html
func (s *Server) authorizeIngress(q query) (any, *apiError) {
	g := s.groups[q.Get("GroupId")]
	if g == nil {
		return nil, errorf("InvalidGroup.NotFound", "The security group '%s' does not exist", q.Get("GroupId"))
	}
	var add []perm
	for _, p := range q.structs("IpPermissions") {
		np := perm{proto: q.Get(p + "IpProtocol")}
		np.from, _ = strconv.Atoi(q.Get(p + "FromPort"))
		np.to, _ = strconv.Atoi(q.Get(p + "ToPort"))
		if np.proto != "tcp" && np.proto != "-1" {
			return nil, errorf("InvalidParameterValue", "the fake serves tcp and -1 rules, not %q", np.proto)
		}
		for _, r := range q.structs(p + "IpRanges") {
			c := q.Get(r + "CidrIp")
			if _, err := netip.ParsePrefix(c); err != nil {
				return nil, errorf("InvalidParameterValue", "CIDR block %s is malformed", c)
			}
			np.cidrs = append(np.cidrs, c)
		}
		for _, r := range q.structs(p + "Groups") {
			np.groups = append(np.groups, q.Get(r+"GroupId"))
		}
		for _, old := range g.ingress {
			if old.proto == np.proto && old.from == np.from && old.to == np.to &&
				(slices.ContainsFunc(np.cidrs, func(c string) bool { return slices.Contains(old.cidrs, c) }) ||
					slices.ContainsFunc(np.groups, func(c string) bool { return slices.Contains(old.groups, c) })) {
				return nil, errorf("InvalidPermission.Duplicate", "the specified rule already exists")
			}
		}
		add = append(add, np)
	}
	g.ingress = append(g.ingress, add...)
	return struct {
		Return bool `xml:"return"`
	}{true}, nil
}

// deleteGroup: a group still used by a network interface (an NLB's lingers
// after the NLB) cannot be deleted (DependencyViolation);
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html
func (s *Server) deleteGroup(q query) (any, *apiError) {
	id := q.Get("GroupId")
	if s.groups[id] == nil {
		return nil, errorf("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	for _, ni := range s.enis {
		if slices.Contains(ni.groups, id) {
			return nil, errorf("DependencyViolation", "resource %s has a dependent object", id)
		}
	}
	delete(s.groups, id)
	return struct {
		Return bool `xml:"return"`
	}{true}, nil
}

// TargetGroupAttributes returns the attributes of the target group named
// like the load balancer lbARN (as the plugin names them).
func (s *Server) TargetGroupAttributes(lbARN string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lbs[lbARN]
	for _, t := range s.tgs {
		if l != nil && t.name == l.name {
			return maps.Clone(t.attrs)
		}
	}
	return nil
}
