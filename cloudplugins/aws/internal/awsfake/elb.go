package awsfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
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
		return s.setAttributes(q, t.attrs, map[string]func(string) bool{
			"preserve_client_ip.enabled":           isBool,
			"deregistration_delay.timeout_seconds": inRange(0, 3600),
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
			if ni := s.enis[l.eni]; ni != nil {
				ni.gone = time.Now().Add(s.linger())
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
	addr := eLBAddress{PrivateIPv4Address: l.privateIP}
	if l.alloc != "" {
		addr = eLBAddress{IPAddress: s.eips[l.alloc].ip, AllocationID: l.alloc}
	}
	x.AZs = []eAZ{{s.subnets[l.subnet].az, l.subnet, []eLBAddress{addr}}}
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

func (s *Server) createLB(q query) (any, *apiError) {
	name := q.Get("Name")
	if len(name) > 32 || name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "internal-") {
		return nil, errorf("ValidationError", "Load balancer name '%s' must be 1 to 32 alphanumerics or hyphens", name)
	}
	if q.Get("Type") != "network" {
		return nil, errorf("ValidationError", "the fake serves network load balancers")
	}
	mappings := q.structs("SubnetMappings.member")
	if len(mappings) != 1 {
		return nil, errorf("ValidationError", "the fake serves one subnet mapping")
	}
	m := mappings[0]
	l := &lb{name: name, scheme: q.Get("Scheme"), subnet: q.Get(m + "SubnetId"), privateIP: q.Get(m + "PrivateIPv4Address"),
		alloc: q.Get(m + "AllocationId"), tags: q.elbTags(), attrs: map[string]string{}, created: time.Now().UTC()}
	settings := fmt.Sprint(l.scheme, l.subnet, l.privateIP, l.alloc)
	for _, old := range s.lbs {
		if old.name == name {
			if fmt.Sprint(old.scheme, old.subnet, old.privateIP, old.alloc) != settings {
				return nil, errorf("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
			}
			return struct {
				LoadBalancers []eLB `xml:"LoadBalancers>member"`
			}{[]eLB{s.lbXML(old)}}, nil
		}
	}
	sn := s.subnets[l.subnet]
	if sn == nil {
		return nil, errorf("SubnetNotFound", "The subnet ID '%s' is not valid", l.subnet)
	}
	ni := &eni{id: s.newID("eni-"), subnet: sn.id, ifType: "network_load_balancer"}
	switch l.scheme {
	case "internal":
		if l.privateIP == "" || l.alloc != "" {
			return nil, errorf("InvalidConfigurationRequest", "an internal load balancer takes a PrivateIPv4Address, not an Elastic IP")
		}
		if h := s.holderOf(l.privateIP); h != nil {
			return nil, errorf("InvalidConfigurationRequest", "Private IPv4 address '%s' is in use", l.privateIP)
		}
		ni.ips = []string{l.privateIP}
	case "internet-facing":
		e := s.eips[l.alloc]
		if e == nil {
			return nil, errorf("AllocationIdNotFound", "Elastic IP '%s' not found", l.alloc)
		}
		if e.eni != "" {
			return nil, errorf("InvalidConfigurationRequest", "Elastic IP '%s' is already associated", l.alloc)
		}
		ni.ips = []string{s.freeIP(sn)}
	default:
		return nil, errorf("ValidationError", "Scheme must be internal or internet-facing")
	}
	l.arn = s.arn("loadbalancer/net", name)
	l.state, l.transition = "provisioning", s.after("active")
	ni.description = "ELB net/" + name + "/" + l.arn[strings.LastIndexByte(l.arn, '/')+1:]
	s.enis[ni.id] = ni
	l.eni = ni.id
	if l.alloc != "" {
		s.associate(s.eips[l.alloc], ni)
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

// describeTargetHealth: targets of a group no listener uses are "unused";
// otherwise healthy once registered for Settle (the fake probes nothing).
func (s *Server) describeTargetHealth(q query) (any, *apiError) {
	t := s.tgs[q.Get("TargetGroupArn")]
	if t == nil {
		return nil, errorf("TargetGroupNotFound", "Target groups '[%s]' not found", q.Get("TargetGroupArn"))
	}
	inUse := len(s.tgXML(t).LoadBalancerArns) > 0
	var out []eTargetHealth
	for _, id := range t.targets {
		var d eTargetHealth
		d.Target.ID, d.Target.Port, d.HealthCheckPort = id, t.port, t.hcPort
		switch {
		case !inUse:
			d.TargetHealth.State, d.TargetHealth.Reason = "unused", "Target.NotInUse"
		case s.instances[id] == nil || s.instances[id].state != "running":
			d.TargetHealth.State, d.TargetHealth.Reason = "unused", "Target.InvalidState"
		default:
			d.TargetHealth.State = "healthy"
		}
		out = append(out, d)
	}
	return struct {
		Descriptions []eTargetHealth `xml:"TargetHealthDescriptions>member"`
	}{out}, nil
}
