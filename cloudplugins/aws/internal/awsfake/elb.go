package awsfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Server) arn(kind, name string) string {
	sum := sha256.Sum256([]byte(fmt.Sprint(kind, name, s.seq)))
	s.seq++
	return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:%s/%s/%s", s.seed.Region, account, kind, name, hex.EncodeToString(sum[:8]))
}

func (s *Server) elb(action string, q query) (any, *apiError) {
	switch action {
	case "DescribeLoadBalancers":
		return s.describeLBs(q)
	case "DescribeTags":
		var out []eTagDescription
		for _, arn := range q.list("ResourceArns.member") {
			switch {
			case s.lbs[arn] != nil:
				out = append(out, eTagDescription{arn, eTags(s.lbs[arn].tags)})
			case s.tgs[arn] != nil:
				out = append(out, eTagDescription{arn, eTags(s.tgs[arn].tags)})
			default:
				return nil, errorf("LoadBalancerNotFound", "Load balancers '[%s]' not found", arn)
			}
		}
		return struct {
			TagDescriptions []eTagDescription `xml:"TagDescriptions>member"`
		}{out}, nil
	case "DescribeTargetGroups":
		var out []eTG
		for _, arn := range q.list("TargetGroupArns.member") {
			t := s.tgs[arn]
			if t == nil {
				return nil, errorf("TargetGroupNotFound", "Target groups '[%s]' not found", arn)
			}
			out = append(out, s.tgXML(t))
		}
		return struct {
			TargetGroups []eTG `xml:"TargetGroups>member"`
		}{out}, nil
	case "DescribeTargetHealth":
		return s.describeTargetHealth(q)
	case "DescribeListeners":
		var out []eListener
		if s.lbs[q.Get("LoadBalancerArn")] == nil {
			return nil, errorf("LoadBalancerNotFound", "Load balancer '%s' not found", q.Get("LoadBalancerArn"))
		}
		for _, l := range s.listeners {
			if l.lb == q.Get("LoadBalancerArn") {
				out = append(out, eListener{l.arn, l.lb, l.port, l.protocol, []eAction{{"forward", l.tg}}})
			}
		}
		return struct {
			Listeners []eListener `xml:"Listeners>member"`
		}{out}, nil
	case "CreateTargetGroup":
		return s.createTG(q)
	case "ModifyTargetGroupAttributes":
		t := s.tgs[q.Get("TargetGroupArn")]
		if t == nil {
			return nil, errorf("TargetGroupNotFound", "Target groups '[%s]' not found", q.Get("TargetGroupArn"))
		}
		// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetGroupAttribute.html
		if r := s.unhealthyDrainingRule(q, t.attrs); r != nil {
			return nil, r
		}
		return s.setAttributes(q, t.attrs, map[string]func(string) bool{
			"preserve_client_ip.enabled":                                   isBool,
			"deregistration_delay.timeout_seconds":                         inRange(0, 3600),
			"deregistration_delay.connection_termination.enabled":          isBool,
			"target_health_state.unhealthy.connection_termination.enabled": isBool,
			"target_health_state.unhealthy.draining_interval_seconds":      inRange(0, 360000),
		})
	case "CreateLoadBalancer":
		return s.createLB(q)
	case "ModifyLoadBalancerAttributes":
		l := s.lbs[q.Get("LoadBalancerArn")]
		if l == nil {
			return nil, errorf("LoadBalancerNotFound", "Load balancer '%s' not found", q.Get("LoadBalancerArn"))
		}
		return s.setAttributes(q, l.attrs, map[string]func(string) bool{"load_balancing.cross_zone.enabled": isBool})
	case "RegisterTargets", "DeregisterTargets":
		t := s.tgs[q.Get("TargetGroupArn")]
		if t == nil {
			return nil, errorf("TargetGroupNotFound", "Target groups '[%s]' not found", q.Get("TargetGroupArn"))
		}
		for _, p := range q.structs("Targets.member") {
			id := q.Get(p + "Id")
			in := s.instances[id]
			switch {
			case action == "DeregisterTargets":
				t.targets = slices.DeleteFunc(t.targets, func(x string) bool { return x == id })
			case in == nil:
				return nil, errorf("InvalidTarget", "The following targets are not valid instances: '%s'", id)
			case in.state != "running":
				return nil, errorf("InvalidTarget", "The following targets are not in a running state and cannot be registered: '%s'", id)
			case !slices.Contains(t.targets, id):
				t.targets = append(t.targets, id)
			}
		}
		return struct{}{}, nil
	case "CreateListener":
		return s.createListener(q)
	case "DeleteListener":
		if s.listeners[q.Get("ListenerArn")] == nil {
			return nil, errorf("ListenerNotFound", "One or more listeners not found")
		}
		delete(s.listeners, q.Get("ListenerArn"))
		return struct{}{}, nil
	case "DeleteLoadBalancer":
		// Deleting a missing load balancer succeeds (API reference).
		if l := s.lbs[q.Get("LoadBalancerArn")]; l != nil {
			for arn, li := range s.listeners {
				if li.lb == l.arn {
					delete(s.listeners, arn)
				}
			}
			for _, z := range l.zones {
				if ni := s.enis[z.eni]; ni != nil {
					ni.gone = time.Now().Add(s.linger())
				}
			}
			delete(s.lbs, l.arn)
		}
		return struct{}{}, nil
	case "DeleteTargetGroup":
		arn := q.Get("TargetGroupArn")
		for _, li := range s.listeners {
			if li.tg == arn {
				return nil, errorf("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
			}
		}
		delete(s.tgs, arn)
		return struct{}{}, nil
	}
	return nil, errorf("InvalidAction", "%s", action)
}

func (s *Server) linger() time.Duration {
	if s.Linger > 0 {
		return s.Linger
	}
	return 5 * s.Settle
}

func isBool(v string) bool { return v == "true" || v == "false" }

func inRange(lo, hi int) func(string) bool {
	return func(v string) bool { n, err := strconv.Atoi(v); return err == nil && n >= lo && n <= hi }
}

func (s *Server) setAttributes(q query, attrs map[string]string, known map[string]func(string) bool) (any, *apiError) {
	for _, p := range q.structs("Attributes.member") {
		k, v := q.Get(p+"Key"), q.Get(p+"Value")
		valid, ok := known[k]
		if !ok || !valid(v) {
			return nil, errorf("ValidationError", "Attribute '%s' with value '%s' is not valid (or not known to the fake)", k, v)
		}
		attrs[k] = v
	}
	var out []eAttribute
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		out = append(out, eAttribute{k, attrs[k]})
	}
	return struct {
		Attributes []eAttribute `xml:"Attributes>member"`
	}{out}, nil
}

func (s *Server) lbXML(l *lb) eLB {
	x := eLB{LoadBalancerArn: l.arn, DNSName: l.name + "-0123456789.elb." + s.seed.Region + ".amazonaws.com", LoadBalancerName: l.name,
		Scheme: l.scheme, VpcID: s.seed.VPCID, Type: "network", IPAddressType: "ipv4", CreatedTime: l.created.Format(time.RFC3339)}
	x.State.Code = l.state
	for _, z := range l.zones {
		var addr eLBAddress
		switch ni := s.enis[z.eni]; {
		case z.alloc != "":
			addr = eLBAddress{IPAddress: s.eips[z.alloc].ip, AllocationID: z.alloc}
		case l.scheme == "internal" && ni != nil:
			addr = eLBAddress{PrivateIPv4Address: ni.ips[0]}
		case ni != nil:
			// An AWS-assigned public address in front of the node's
			// private one (TEST-NET-3, never routed).
			addr = eLBAddress{IPAddress: "203.0.113." + strconv.Itoa(200+len(x.AZs)), PrivateIPv4Address: ni.ips[0]}
		}
		x.AZs = append(x.AZs, eAZ{s.subnets[z.subnet].az, z.subnet, []eLBAddress{addr}})
	}
	x.SecurityGroups = l.groups
	return x
}

func (s *Server) describeLBs(q query) (any, *apiError) {
	arns, names := q.list("LoadBalancerArns.member"), q.list("Names.member")
	var out []eLB
	for _, arn := range arns {
		l := s.lbs[arn]
		if l == nil {
			if !strings.HasPrefix(arn, "arn:") {
				return nil, errorf("ValidationError", "'%s' is not a valid load balancer ARN", arn)
			}
			return nil, errorf("LoadBalancerNotFound", "Load balancers '[%s]' not found", arn)
		}
		out = append(out, s.lbXML(l))
	}
	for _, name := range names {
		var found *lb
		for _, l := range s.lbs {
			if l.name == name {
				found = l
			}
		}
		if found == nil {
			return nil, errorf("LoadBalancerNotFound", "Load balancers '[%s]' not found", name)
		}
		out = append(out, s.lbXML(found))
	}
	if len(arns)+len(names) == 0 {
		for _, l := range s.lbs {
			out = append(out, s.lbXML(l))
		}
	}
	slices.SortFunc(out, func(a, b eLB) int { return compare(a.LoadBalancerArn, b.LoadBalancerArn) })
	out, next := page(s, out, q.Get("Marker"))
	return struct {
		LoadBalancers []eLB  `xml:"LoadBalancers>member"`
		NextMarker    string `xml:"NextMarker,omitempty"`
	}{out, next}, nil
}

func (s *Server) tgXML(t *tg) eTG {
	x := eTG{TargetGroupArn: t.arn, TargetGroupName: t.name, Protocol: t.protocol, Port: t.port, VpcID: t.vpc,
		HealthCheckProtocol: t.hcProtocol, HealthCheckPort: t.hcPort, HealthCheckEnabled: true,
		HealthCheckIntervalSeconds: t.interval, HealthCheckTimeoutSeconds: t.timeout, HealthyThresholdCount: t.healthy,
		UnhealthyThresholdCount: t.unhealthy, HealthCheckPath: t.hcPath, MatcherHTTPCode: t.matcher, TargetType: t.targetType}
	for _, li := range s.listeners {
		if li.tg == t.arn && !slices.Contains(x.LoadBalancerArns, li.lb) {
			x.LoadBalancerArns = append(x.LoadBalancerArns, li.lb)
		}
	}
	return x
}

func (s *Server) createTG(q query) (any, *apiError) {
	name := q.Get("Name")
	if len(name) > 32 || name == "" || strings.HasPrefix(name, "-") {
		return nil, errorf("ValidationError", "Target group name '%s' must be 1 to 32 alphanumerics or hyphens", name)
	}
	t := &tg{name: name, protocol: q.Get("Protocol"), port: q.int("Port", 0), vpc: q.Get("VpcId"), targetType: q.Get("TargetType"),
		hcProtocol: q.Get("HealthCheckProtocol"), hcPort: q.Get("HealthCheckPort"), hcPath: q.Get("HealthCheckPath"), matcher: q.Get("Matcher.HttpCode"),
		interval: q.int("HealthCheckIntervalSeconds", 30), timeout: q.int("HealthCheckTimeoutSeconds", 10),
		healthy: q.int("HealthyThresholdCount", 5), unhealthy: q.int("UnhealthyThresholdCount", 2),
		tags: q.elbTags(), attrs: map[string]string{}}
	switch {
	case t.vpc != s.seed.VPCID:
		return nil, errorf("ValidationError", "The VPC ID '%s' is not found", t.vpc)
	case t.interval < 5 || t.interval > 300:
		return nil, errorf("ValidationError", "Health check interval must be between 5 and 300 seconds")
	case t.timeout < 2 || t.timeout > 120:
		return nil, errorf("ValidationError", "Health check timeout must be between 2 and 120 seconds")
	case t.healthy < 2 || t.healthy > 10 || t.unhealthy < 2 || t.unhealthy > 10:
		return nil, errorf("ValidationError", "Health check thresholds must be between 2 and 10")
	case t.protocol != "TCP" || t.targetType != "instance":
		return nil, errorf("ValidationError", "the fake serves TCP target groups of instances")
	}
	t.settings = fmt.Sprint(t.protocol, t.port, t.vpc, t.hcProtocol, t.hcPort, t.hcPath, t.interval, t.timeout, t.healthy, t.unhealthy)
	for _, old := range s.tgs {
		if old.name == name {
			if old.settings != t.settings {
				return nil, errorf("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
			}
			return struct {
				TargetGroups []eTG `xml:"TargetGroups>member"`
			}{[]eTG{s.tgXML(old)}}, nil
		}
	}
	t.arn = s.arn("targetgroup", name)
	s.tgs[t.arn] = t
	return struct {
		TargetGroups []eTG `xml:"TargetGroups>member"`
	}{[]eTG{s.tgXML(t)}}, nil
}

// createLB creates a network load balancer with one node per subnet
// mapping. AWS rules the fake enforces (API reference, CreateLoadBalancer;
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/network-load-balancers.html#availability-zones):
// at most one subnet per Availability Zone; an internal NLB's mapping may
// name a PrivateIPv4Address from its subnet, an internet-facing one an
// AllocationId; mappings without an address get one AWS assigns; security
// groups can only be given at creation.
func (s *Server) createLB(q query) (any, *apiError) {
	name := q.Get("Name")
	if len(name) > 32 || name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "internal-") {
		return nil, errorf("ValidationError", "Load balancer name '%s' must be 1 to 32 alphanumerics or hyphens", name)
	}
	if q.Get("Type") != "network" {
		return nil, errorf("ValidationError", "the fake serves network load balancers")
	}
	mappings := q.structs("SubnetMappings.member")
	if len(mappings) == 0 {
		return nil, errorf("ValidationError", "At least one subnet mapping is required")
	}
	l := &lb{name: name, scheme: q.Get("Scheme"), groups: q.list("SecurityGroups.member"), tags: q.elbTags(), attrs: map[string]string{}, created: time.Now().UTC()}
	seenAZ := map[string]bool{}
	for _, m := range mappings {
		z := lbZone{subnet: q.Get(m + "SubnetId"), privateIP: q.Get(m + "PrivateIPv4Address"), alloc: q.Get(m + "AllocationId")}
		sn := s.subnets[z.subnet]
		if sn == nil {
			return nil, errorf("SubnetNotFound", "The subnet ID '%s' is not valid", z.subnet)
		}
		if seenAZ[sn.az] {
			return nil, errorf("InvalidConfigurationRequest", "You cannot specify multiple subnets in the same Availability Zone ('%s')", sn.az)
		}
		seenAZ[sn.az] = true
		l.zones = append(l.zones, z)
	}
	settings := func(l *lb) string { return fmt.Sprint(l.scheme, l.zones, l.groups) }
	for _, old := range s.lbs {
		if old.name == name {
			if settings(old) != settings(l) {
				return nil, errorf("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
			}
			return struct {
				LoadBalancers []eLB `xml:"LoadBalancers>member"`
			}{[]eLB{s.lbXML(old)}}, nil
		}
	}
	for _, g := range l.groups {
		if s.groups[g] == nil {
			return nil, errorf("InvalidConfigurationRequest", "One or more security groups are invalid: '%s'", g)
		}
	}
	var enis []*eni
	for i := range l.zones {
		z := &l.zones[i]
		sn := s.subnets[z.subnet]
		ni := &eni{id: s.newID("eni-"), subnet: sn.id, ifType: "network_load_balancer", groups: l.groups}
		switch l.scheme {
		case "internal":
			if z.alloc != "" {
				return nil, errorf("InvalidConfigurationRequest", "an internal load balancer takes a PrivateIPv4Address, not an Elastic IP")
			}
			if z.privateIP != "" {
				if a, err := netip.ParseAddr(z.privateIP); err != nil || !sn.cidr.Contains(a) {
					return nil, errorf("InvalidConfigurationRequest", "Private IPv4 address '%s' is not in subnet '%s'", z.privateIP, sn.id)
				}
				if h := s.holderOf(z.privateIP); h != nil {
					return nil, errorf("InvalidConfigurationRequest", "Private IPv4 address '%s' is in use", z.privateIP)
				}
				ni.ips = []string{z.privateIP}
			}
		case "internet-facing":
			if z.privateIP != "" {
				return nil, errorf("InvalidConfigurationRequest", "an internet-facing load balancer takes an Elastic IP, not a PrivateIPv4Address")
			}
			if z.alloc != "" {
				e := s.eips[z.alloc]
				if e == nil {
					return nil, errorf("AllocationIdNotFound", "Elastic IP '%s' not found", z.alloc)
				}
				if e.eni != "" {
					return nil, errorf("InvalidConfigurationRequest", "Elastic IP '%s' is already associated", z.alloc)
				}
			}
		default:
			return nil, errorf("ValidationError", "Scheme must be internal or internet-facing")
		}
		enis = append(enis, ni)
	}
	l.arn = s.arn("loadbalancer/net", name)
	l.state, l.transition = "provisioning", s.after("active")
	for i, ni := range enis {
		if len(ni.ips) == 0 {
			ni.ips = []string{s.freeIP(s.subnets[ni.subnet])}
		}
		ni.description = "ELB net/" + name + "/" + l.arn[strings.LastIndexByte(l.arn, '/')+1:]
		s.enis[ni.id] = ni
		l.zones[i].eni = ni.id
		if a := l.zones[i].alloc; a != "" {
			s.associate(s.eips[a], ni)
		}
	}
	s.lbs[l.arn] = l
	return struct {
		LoadBalancers []eLB `xml:"LoadBalancers>member"`
	}{[]eLB{s.lbXML(l)}}, nil
}

func (s *Server) createListener(q query) (any, *apiError) {
	l := s.lbs[q.Get("LoadBalancerArn")]
	if l == nil {
		return nil, errorf("LoadBalancerNotFound", "Load balancer '%s' not found", q.Get("LoadBalancerArn"))
	}
	tgARN := q.Get("DefaultActions.member.1.TargetGroupArn")
	if s.tgs[tgARN] == nil || q.Get("DefaultActions.member.1.Type") != "forward" {
		return nil, errorf("TargetGroupNotFound", "Target group '%s' not found", tgARN)
	}
	port := q.int("Port", 0)
	for _, li := range s.listeners {
		if li.lb == l.arn && li.port == port {
			if li.tg != tgARN {
				return nil, errorf("DuplicateListener", "A listener already exists on this port for this load balancer")
			}
			return struct {
				Listeners []eListener `xml:"Listeners>member"`
			}{[]eListener{{li.arn, li.lb, li.port, li.protocol, []eAction{{"forward", li.tg}}}}}, nil
		}
	}
	li := &listener{arn: s.arn("listener/net", l.name), lb: l.arn, tg: tgARN, protocol: q.Get("Protocol"), port: port}
	s.listeners[li.arn] = li
	return struct {
		Listeners []eListener `xml:"Listeners>member"`
	}{[]eListener{{li.arn, li.lb, li.port, li.protocol, []eAction{{"forward", li.tg}}}}}, nil
}

// describeTargetHealth: targets of a group no listener uses are "unused",
// and so are targets in a zone the load balancer is not enabled in (AWS:
// "Target.NotInUse — the target is in an Availability Zone that is not
// enabled for its load balancer";
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetHealth.html);
// otherwise healthy unless a test marked the target's health check as
// failing (SetTargetHealthy), as the fake probes nothing itself.
func (s *Server) describeTargetHealth(q query) (any, *apiError) {
	t := s.tgs[q.Get("TargetGroupArn")]
	if t == nil {
		return nil, errorf("TargetGroupNotFound", "Target groups '[%s]' not found", q.Get("TargetGroupArn"))
	}
	var out []eTargetHealth
	for _, id := range t.targets {
		var d eTargetHealth
		d.Target.ID, d.Target.Port, d.HealthCheckPort = id, t.port, t.hcPort
		d.TargetHealth.State, d.TargetHealth.Reason, d.TargetHealth.Description = s.targetState(t, id)
		out = append(out, d)
	}
	return struct {
		Descriptions []eTargetHealth `xml:"TargetHealthDescriptions>member"`
	}{out}, nil
}

// lbsOf returns the load balancers whose listeners forward to t.
func (s *Server) lbsOf(t *tg) []*lb {
	var out []*lb
	for _, li := range s.listeners {
		if l := s.lbs[li.lb]; li.tg == t.arn && l != nil && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func (l *lb) enabledIn(s *Server, az string) bool {
	return slices.ContainsFunc(l.zones, func(z lbZone) bool { return s.subnets[z.subnet].az == az })
}

// targetState is a target's health as AWS reports it: state, reason,
// description.
func (s *Server) targetState(t *tg, id string) (string, string, string) {
	lbs := s.lbsOf(t)
	in := s.instances[id]
	switch {
	case len(lbs) == 0:
		return "unused", "Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"
	case !slices.ContainsFunc(lbs, func(l *lb) bool { return in != nil && l.enabledIn(s, in.az) }):
		return "unused", "Target.NotInUse", "Target is in an Availability Zone that is not enabled for the load balancer"
	case in == nil || in.state != "running":
		return "unused", "Target.InvalidState", "Target is in the stopped or terminated state"
	case s.failing[id]:
		return "unhealthy", "Target.FailedHealthChecks", "Health checks failed"
	}
	return "healthy", "", ""
}

// SetTargetHealthy makes the health checks of instance id pass or fail,
// standing in for the agent's gate (the fake probes nothing).
func (s *Server) SetTargetHealthy(id string, healthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing == nil {
		s.failing = map[string]bool{}
	}
	s.failing[id] = !healthy
}

// Routes returns, for a load balancer with a listener, the targets a new
// connection can reach from each enabled zone's node: the healthy targets
// in enabled zones, all of them with cross-zone load balancing on, the
// node's own zone only with it off
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/network-load-balancers.html#cross-zone-load-balancing).
// NLBs fail open: when no target is healthy, every registered target in an
// enabled zone is routed to
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html).
func (s *Server) Routes(lbARN string) map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	l := s.lbs[lbARN]
	if l == nil {
		return nil
	}
	out := map[string][]string{}
	for _, li := range s.listeners {
		t := s.tgs[li.tg]
		if li.lb != l.arn || t == nil {
			continue
		}
		crossZone := l.attrs["load_balancing.cross_zone.enabled"] == "true"
		for _, z := range l.zones {
			az := s.subnets[z.subnet].az
			var healthy, enabled []string
			for _, id := range t.targets {
				in := s.instances[id]
				if in == nil || !l.enabledIn(s, in.az) || (!crossZone && in.az != az) {
					continue
				}
				enabled = append(enabled, id)
				if st, _, _ := s.targetState(t, id); st == "healthy" {
					healthy = append(healthy, id)
				}
			}
			if len(healthy) == 0 {
				healthy = enabled
			}
			slices.Sort(healthy)
			out[az] = healthy
		}
	}
	return out
}

// unhealthyDrainingRule: "target_health_state.unhealthy.draining_interval_seconds
// can only be configured when
// target_health_state.unhealthy.connection_termination.enabled is false"
// (TargetGroupAttribute, API reference).
func (s *Server) unhealthyDrainingRule(q query, have map[string]string) *apiError {
	next := maps.Clone(have)
	for _, p := range q.structs("Attributes.member") {
		next[q.Get(p+"Key")] = q.Get(p + "Value")
	}
	if v, ok := next["target_health_state.unhealthy.draining_interval_seconds"]; ok && v != "0" &&
		next["target_health_state.unhealthy.connection_termination.enabled"] != "false" {
		return errorf("ValidationError", "target_health_state.unhealthy.draining_interval_seconds can only be set when target_health_state.unhealthy.connection_termination.enabled is false")
	}
	return nil
}
