package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// lbRecord is a triad load balancer with its tags.
type lbRecord struct {
	lb   elbtypes.LoadBalancer
	tags map[string]string
}

func (r lbRecord) arn() string         { return aws.ToString(r.lb.LoadBalancerArn) }
func (r lbRecord) targetGroup() string { return r.tags[tagTargetGroup] }

// address returns the address id (allocation id or private IP) and the IP
// the load balancer listens on.
func (r lbRecord) address() (id, ip string) {
	for _, az := range r.lb.AvailabilityZones {
		for _, a := range az.LoadBalancerAddresses {
			if alloc := aws.ToString(a.AllocationId); alloc != "" {
				return alloc, aws.ToString(a.IpAddress)
			}
			if priv := aws.ToString(a.PrivateIPv4Address); priv != "" {
				return priv, priv
			}
		}
	}
	return "", ""
}

func (r lbRecord) hasAddress(id string) bool {
	a, ip := r.address()
	return id != "" && (a == id || ip == id)
}

// resourceName is the load balancer's and target group's name: AWS allows
// 32 characters, so a hash of the idempotency token, which also makes a
// retried create find the first one (AWS treats a create with the same
// name and settings as idempotent).
func resourceName(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "triad-" + hex.EncodeToString(sum[:8])
}

func elbTag(k, v string) elbtypes.Tag { return elbtypes.Tag{Key: aws.String(k), Value: aws.String(v)} }

// withTags keeps the network load balancers triad created, with their tags
// (DescribeTags takes 20 ARNs at a time).
func (p *Provider) withTags(ctx context.Context, lbs []elbtypes.LoadBalancer) ([]lbRecord, error) {
	var out []lbRecord
	for chunk := range slices.Chunk(lbs, 20) {
		var arns []string
		for _, lb := range chunk {
			arns = append(arns, aws.ToString(lb.LoadBalancerArn))
		}
		tags, err := p.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: arns})
		if err != nil {
			return nil, mapError(err)
		}
		byARN := map[string]map[string]string{}
		for _, d := range tags.TagDescriptions {
			m := map[string]string{}
			for _, t := range d.Tags {
				m[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			byARN[aws.ToString(d.ResourceArn)] = m
		}
		for _, lb := range chunk {
			if m := byARN[aws.ToString(lb.LoadBalancerArn)]; m[tagTargetGroup] != "" && lb.Type == elbtypes.LoadBalancerTypeEnumNetwork {
				out = append(out, lbRecord{lb: lb, tags: m})
			}
		}
	}
	return out, nil
}

// triadLoadBalancers lists every load balancer of the region that triad
// created.
func (p *Provider) triadLoadBalancers(ctx context.Context) ([]lbRecord, error) {
	var all []elbtypes.LoadBalancer
	pages := elb.NewDescribeLoadBalancersPaginator(p.elb, &elb.DescribeLoadBalancersInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		all = append(all, page.LoadBalancers...)
	}
	return p.withTags(ctx, all)
}

func (p *Provider) loadBalancer(ctx context.Context, id string) (lbRecord, error) {
	if !strings.HasPrefix(id, "arn:") {
		return lbRecord{}, fmt.Errorf("%w: load balancer %q (an ELBv2 ARN)", sdk.ErrNotFound, id)
	}
	return p.describeLoadBalancer(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{id}}, id)
}

func (p *Provider) describeLoadBalancer(ctx context.Context, in *elb.DescribeLoadBalancersInput, what string) (lbRecord, error) {
	out, err := p.elb.DescribeLoadBalancers(ctx, in)
	if err != nil {
		return lbRecord{}, mapError(err)
	}
	recs, err := p.withTags(ctx, out.LoadBalancers)
	if err != nil {
		return lbRecord{}, err
	}
	if len(recs) != 1 {
		return lbRecord{}, fmt.Errorf("%w: load balancer %s (none that triad created)", sdk.ErrNotFound, what)
	}
	return recs[0], nil
}

var backendHealth = map[elbtypes.TargetHealthStateEnum]sdk.BackendHealth{
	elbtypes.TargetHealthStateEnumInitial:   sdk.BackendInitial,
	elbtypes.TargetHealthStateEnumHealthy:   sdk.BackendHealthy,
	elbtypes.TargetHealthStateEnumUnhealthy: sdk.BackendUnhealthy,
	elbtypes.TargetHealthStateEnumDraining:  sdk.BackendUnhealthy,
	// unhealthy.draining: failing its checks, keeping its connections for
	// the draining interval; it gets no new ones.
	elbtypes.TargetHealthStateEnum("unhealthy.draining"): sdk.BackendUnhealthy,
	// Routed nothing: no listener uses the group yet (traffic disabled),
	// or the target's zone is not enabled on the NLB. Never "initial": a
	// target in a zone without a subnet mapping stays unused for ever.
	elbtypes.TargetHealthStateEnumUnused: sdk.BackendUnused,
	// Health checks disabled; triad always enables them.
	elbtypes.TargetHealthStateEnumUnavailable: sdk.BackendInitial,
}

// zonesOf is the load balancer's enabled zones with their addresses.
func zonesOf(lb elbtypes.LoadBalancer) []sdk.LoadBalancerZone {
	state := ""
	if lb.State != nil {
		state = string(lb.State.Code)
	}
	var out []sdk.LoadBalancerZone
	for _, az := range lb.AvailabilityZones {
		z := sdk.LoadBalancerZone{Zone: aws.ToString(az.ZoneName), SubnetID: aws.ToString(az.SubnetId), State: state}
		for _, a := range az.LoadBalancerAddresses {
			if z.IP = aws.ToString(a.IpAddress); z.IP == "" {
				z.IP = aws.ToString(a.PrivateIPv4Address)
			}
		}
		out = append(out, z)
	}
	slices.SortFunc(out, func(a, b sdk.LoadBalancerZone) int { return strings.Compare(a.Zone, b.Zone) })
	return out
}

func (p *Provider) view(ctx context.Context, r lbRecord) (sdk.LoadBalancer, error) {
	out := sdk.LoadBalancer{ID: r.arn(), Name: r.tags[tagName], Scheme: sdk.SchemeInternal, Labels: labelsOf(r.tags)}
	if r.lb.Scheme == elbtypes.LoadBalancerSchemeEnumInternetFacing {
		out.Scheme = sdk.SchemePublic
	}
	out.AddressID, out.IP = r.address()
	out.Zones = zonesOf(r.lb)
	out.ListenerPort, _ = strconv.Atoi(r.tags[tagListenerPort])
	tgs, err := p.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{r.targetGroup()}})
	if err != nil {
		return out, mapError(err)
	}
	for _, tg := range tgs.TargetGroups {
		out.BackendPort = int(aws.ToInt32(tg.Port))
		out.HealthCheck.Port, _ = strconv.Atoi(aws.ToString(tg.HealthCheckPort))
		out.HealthCheck.Path = aws.ToString(tg.HealthCheckPath)
		out.HealthCheck.Interval = time.Duration(aws.ToInt32(tg.HealthCheckIntervalSeconds)) * time.Second
		out.HealthCheck.Timeout = time.Duration(aws.ToInt32(tg.HealthCheckTimeoutSeconds)) * time.Second
		out.HealthCheck.HealthyThreshold = int(aws.ToInt32(tg.HealthyThresholdCount))
		out.HealthCheck.UnhealthyThreshold = int(aws.ToInt32(tg.UnhealthyThresholdCount))
	}
	health, err := p.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(r.targetGroup())})
	if err != nil {
		return out, mapError(err)
	}
	for _, d := range health.TargetHealthDescriptions {
		b := sdk.Backend{InstanceID: aws.ToString(d.Target.Id), Health: sdk.BackendInitial}
		if d.TargetHealth != nil {
			b.Health = backendHealth[d.TargetHealth.State]
		}
		out.Backends = append(out.Backends, b)
	}
	slices.SortFunc(out.Backends, func(a, b sdk.Backend) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	listeners, err := p.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(r.arn())})
	if err != nil {
		return out, mapError(err)
	}
	out.TrafficEnabled = len(listeners.Listeners) > 0
	return out, nil
}

// GetLoadBalancer implements sdk.Provider.
func (p *Provider) GetLoadBalancer(ctx context.Context, id string) (sdk.LoadBalancer, error) {
	r, err := p.loadBalancer(ctx, id)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	return p.view(ctx, r)
}

// ListLoadBalancers implements sdk.Provider.
func (p *Provider) ListLoadBalancers(ctx context.Context, labels map[string]string) ([]sdk.LoadBalancer, error) {
	recs, err := p.triadLoadBalancers(ctx)
	if err != nil {
		return nil, err
	}
	var out []sdk.LoadBalancer
	for _, r := range recs {
		if !hasLabels(r.tags, labels) {
			continue
		}
		v, err := p.view(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b sdk.LoadBalancer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// seconds rounds d up to whole seconds within AWS's range for the field.
func seconds(d time.Duration, lo, hi int32) *int32 {
	s := int32(math.Ceil(d.Seconds()))
	return aws.Int32(min(max(s, lo), hi))
}

// CreateLoadBalancer implements sdk.Provider: a target group (TCP,
// instances, HTTPS health check on the gate, draining matched to
// DrainDelay), a security group admitting the clients on the listener
// port, and a network load balancer with one subnet mapping per configured
// zone — the address in its own zone's mapping, AWS-assigned addresses in
// the others — because an NLB routes nothing to targets in zones it has no
// mapping in, cross-zone load balancing or not. There is no listener:
// traffic is disabled until SetLoadBalancerTraffic. It returns once the
// NLB is active.
//
// NLB health checks run every 5 to 300 s (the contract's 2 s default
// becomes 5 s) with a 2 to 120 s timeout; the load balancer returned shows
// the values in force.
func (p *Provider) CreateLoadBalancer(ctx context.Context, req sdk.CreateLoadBalancerRequest) (sdk.LoadBalancer, error) {
	if err := checkToken(req.IdempotencyToken); err != nil {
		return sdk.LoadBalancer{}, err
	}
	if req.ListenerPort <= 0 || req.ListenerPort > 65535 || req.BackendPort <= 0 || req.BackendPort > 65535 {
		return sdk.LoadBalancer{}, fmt.Errorf("%w: ports %d/%d out of range", sdk.ErrInvalidArgument, req.ListenerPort, req.BackendPort)
	}
	name := resourceName(req.IdempotencyToken)
	if r, err := p.describeLoadBalancer(ctx, &elb.DescribeLoadBalancersInput{Names: []string{name}}, name); err == nil {
		// A retry: the first call got at least this far.
		return p.finishLoadBalancer(ctx, r, req.BackendInstanceIDs)
	} else if !errors.Is(err, sdk.ErrNotFound) {
		return sdk.LoadBalancer{}, err
	}
	a, h, err := p.address(ctx, req.AddressID)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	wantKind := map[sdk.LoadBalancerScheme]sdk.AddressKind{sdk.SchemeInternal: sdk.AddressPrivate, sdk.SchemePublic: sdk.AddressPublic}[req.Scheme]
	if wantKind == "" || a.Kind != wantKind {
		return sdk.LoadBalancer{}, fmt.Errorf("%w: a %q load balancer needs a %s address; %s is %s", sdk.ErrInvalidArgument, req.Scheme, wantKind, a.IP, a.Kind)
	}
	if !h.released() {
		return sdk.LoadBalancer{}, fmt.Errorf("%w: address %s is held by %s; release it first", sdk.ErrFailedPrecondition, a.IP, h)
	}
	mappings, scheme, err := p.subnetMappings(ctx, a)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	cidrs, err := p.clientCIDRs(ctx, req.Scheme, req.BackendInstanceIDs, req.BackendPort)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	group, err := p.ensureLBGroup(ctx, name, req, cidrs)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	hc := req.HealthCheck.WithDefaults()
	tg, err := p.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name:                       aws.String(name),
		Protocol:                   elbtypes.ProtocolEnumTcp,
		Port:                       aws.Int32(int32(req.BackendPort)),
		VpcId:                      aws.String(p.cfg.VPCID),
		TargetType:                 elbtypes.TargetTypeEnumInstance,
		HealthCheckEnabled:         aws.Bool(true),
		HealthCheckProtocol:        elbtypes.ProtocolEnumHttps,
		HealthCheckPort:            aws.String(strconv.Itoa(hc.Port)),
		HealthCheckPath:            aws.String(hc.Path),
		HealthCheckIntervalSeconds: seconds(hc.Interval, 5, 300),
		HealthCheckTimeoutSeconds:  seconds(hc.Timeout, 2, 120),
		HealthyThresholdCount:      aws.Int32(min(max(int32(hc.HealthyThreshold), 2), 10)),
		UnhealthyThresholdCount:    aws.Int32(min(max(int32(hc.UnhealthyThreshold), 2), 10)),
		Matcher:                    &elbtypes.Matcher{HttpCode: aws.String("200")},
		Tags:                       tagsOf(elbTag, req.Labels, tagToken, req.IdempotencyToken),
	})
	if err != nil {
		return sdk.LoadBalancer{}, mapError(err)
	}
	tgARN := aws.ToString(tg.TargetGroups[0].TargetGroupArn)
	if _, err := p.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: aws.String(tgARN), Attributes: p.targetGroupAttributes(req.Scheme),
	}); err != nil {
		return sdk.LoadBalancer{}, mapError(err)
	}
	out, err := p.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
		Name:           aws.String(name),
		Type:           elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:         scheme,
		IpAddressType:  elbtypes.IpAddressTypeIpv4,
		SubnetMappings: mappings,
		// An NLB's security groups can only be set at creation.
		SecurityGroups: []string{group},
		Tags: tagsOf(elbTag, req.Labels, tagToken, req.IdempotencyToken, tagName, req.Name, tagTargetGroup, tgARN,
			tagListenerPort, strconv.Itoa(req.ListenerPort)),
	})
	if err != nil {
		return sdk.LoadBalancer{}, mapError(err)
	}
	r := lbRecord{lb: out.LoadBalancers[0], tags: map[string]string{tagTargetGroup: tgARN}}
	return p.finishLoadBalancer(ctx, r, req.BackendInstanceIDs)
}

// subnetMappings maps every configured zone's subnet; the address goes in
// the mapping of the subnet that holds it (private) or of the first zone
// (an Elastic IP is not zonal; clients of that IP enter through that
// zone's node and cross-zone load balancing spreads them).
func (p *Provider) subnetMappings(ctx context.Context, a sdk.Address) ([]elbtypes.SubnetMapping, elbtypes.LoadBalancerSchemeEnum, error) {
	scheme := elbtypes.LoadBalancerSchemeEnumInternal
	home := p.cfg.Subnets[p.cfg.zones()[0]]
	if a.Kind == sdk.AddressPrivate {
		subnet, err := p.subnetFor(ctx, a.IP)
		if err != nil {
			return nil, scheme, err
		}
		home = subnet
	} else {
		scheme = elbtypes.LoadBalancerSchemeEnumInternetFacing
	}
	var out []elbtypes.SubnetMapping
	for _, zone := range p.cfg.zones() {
		m := elbtypes.SubnetMapping{SubnetId: aws.String(p.cfg.Subnets[zone])}
		if p.cfg.Subnets[zone] == home {
			if a.Kind == sdk.AddressPrivate {
				m.PrivateIPv4Address = aws.String(a.IP)
			} else {
				m.AllocationId = aws.String(a.ID)
			}
		}
		out = append(out, m)
	}
	return out, scheme, nil
}

// targetGroupAttributes: client IP preservation as configured; a backend
// failing its health check (its gate closed) keeps its connections for
// DrainDelay instead of having them reset, so kube-apiserver's graceful
// shutdown moves them; a deregistered backend's connections are closed
// when the same delay ends, so nothing outlives the drain triad waits for.
func (p *Provider) targetGroupAttributes(scheme sdk.LoadBalancerScheme) []elbtypes.TargetGroupAttribute {
	preserve := p.cfg.PreserveClientIP.Internal
	if scheme == sdk.SchemePublic {
		preserve = p.cfg.PreserveClientIP.Public
	}
	drain := strconv.Itoa(int(math.Ceil(p.cfg.DrainDelay.Seconds())))
	attr := func(k, v string) elbtypes.TargetGroupAttribute {
		return elbtypes.TargetGroupAttribute{Key: aws.String(k), Value: aws.String(v)}
	}
	return []elbtypes.TargetGroupAttribute{
		attr("preserve_client_ip.enabled", strconv.FormatBool(preserve)),
		attr("deregistration_delay.timeout_seconds", drain),
		attr("deregistration_delay.connection_termination.enabled", "true"),
		attr("target_health_state.unhealthy.connection_termination.enabled", "false"),
		attr("target_health_state.unhealthy.draining_interval_seconds", drain),
	}
}

// finishLoadBalancer turns cross-zone load balancing on, registers the
// backends and waits until active. Every part is idempotent: a retried
// create that finds the NLB already there finishes it the same way.
func (p *Provider) finishLoadBalancer(ctx context.Context, r lbRecord, backends []string) (sdk.LoadBalancer, error) {
	if _, err := p.elb.ModifyLoadBalancerAttributes(ctx, &elb.ModifyLoadBalancerAttributesInput{
		LoadBalancerArn: aws.String(r.arn()),
		Attributes:      []elbtypes.LoadBalancerAttribute{{Key: aws.String("load_balancing.cross_zone.enabled"), Value: aws.String("true")}},
	}); err != nil {
		return sdk.LoadBalancer{}, mapError(err)
	}
	if err := p.setTargets(ctx, r, backends); err != nil {
		return sdk.LoadBalancer{}, err
	}
	w := elb.NewLoadBalancerAvailableWaiter(p.elb, func(o *elb.LoadBalancerAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
	})
	if err := w.Wait(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{r.arn()}}, p.cfg.WaitTimeout.Duration); err != nil {
		return sdk.LoadBalancer{}, fmt.Errorf("waiting for load balancer %s to be active: %w", r.arn(), mapError(err))
	}
	return p.GetLoadBalancer(ctx, r.arn())
}

// setTargets makes the target group's instances exactly ids.
func (p *Provider) setTargets(ctx context.Context, r lbRecord, ids []string) error {
	for _, id := range ids {
		inst, err := p.describeInstance(ctx, id)
		if err != nil {
			return fmt.Errorf("backend: %w", err)
		}
		if inst.State.Name != types.InstanceStateNameRunning && inst.State.Name != types.InstanceStateNamePending {
			return fmt.Errorf("%w: backend %s is %s; ELBv2 registers running instances only", sdk.ErrFailedPrecondition, id, inst.State.Name)
		}
	}
	health, err := p.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(r.targetGroup())})
	if err != nil {
		return mapError(err)
	}
	var have []string
	for _, d := range health.TargetHealthDescriptions {
		have = append(have, aws.ToString(d.Target.Id))
	}
	targets := func(ids []string) []elbtypes.TargetDescription {
		var t []elbtypes.TargetDescription
		for _, id := range ids {
			t = append(t, elbtypes.TargetDescription{Id: aws.String(id)})
		}
		return t
	}
	var add, remove []string
	for _, id := range ids {
		if !slices.Contains(have, id) {
			add = append(add, id)
		}
	}
	for _, id := range have {
		if !slices.Contains(ids, id) {
			remove = append(remove, id)
		}
	}
	if len(add) > 0 {
		if _, err := p.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: aws.String(r.targetGroup()), Targets: targets(add)}); err != nil {
			return mapError(err)
		}
	}
	if len(remove) > 0 {
		if _, err := p.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: aws.String(r.targetGroup()), Targets: targets(remove)}); err != nil {
			return mapError(err)
		}
	}
	return nil
}

// SetLoadBalancerBackends implements sdk.Provider with RegisterTargets and
// DeregisterTargets (removed backends drain for the deregistration delay).
func (p *Provider) SetLoadBalancerBackends(ctx context.Context, id string, instanceIDs []string) (sdk.LoadBalancer, error) {
	r, err := p.loadBalancer(ctx, id)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	if err := p.setTargets(ctx, r, instanceIDs); err != nil {
		return sdk.LoadBalancer{}, err
	}
	return p.view(ctx, r)
}

// SetLoadBalancerTraffic implements sdk.Provider: enabled creates the TCP
// listener, disabled deletes it. On AWS deleting a listener also ends the
// connections it carried, not only new ones; triad only ever enables.
func (p *Provider) SetLoadBalancerTraffic(ctx context.Context, id string, enabled bool) (sdk.LoadBalancer, error) {
	r, err := p.loadBalancer(ctx, id)
	if err != nil {
		return sdk.LoadBalancer{}, err
	}
	listeners, err := p.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: aws.String(r.arn())})
	if err != nil {
		return sdk.LoadBalancer{}, mapError(err)
	}
	switch {
	case enabled && len(listeners.Listeners) == 0:
		port, err := strconv.Atoi(r.tags[tagListenerPort])
		if err != nil {
			return sdk.LoadBalancer{}, fmt.Errorf("load balancer %s has no %s tag", id, tagListenerPort)
		}
		_, err = p.elb.CreateListener(ctx, &elb.CreateListenerInput{
			LoadBalancerArn: aws.String(r.arn()),
			Protocol:        elbtypes.ProtocolEnumTcp,
			Port:            aws.Int32(int32(port)),
			DefaultActions:  []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(r.targetGroup())}},
		})
		if err != nil {
			return sdk.LoadBalancer{}, mapError(err)
		}
	case !enabled:
		for _, l := range listeners.Listeners {
			_, err := p.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: l.ListenerArn})
			if err = mapError(err); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return sdk.LoadBalancer{}, err
			}
		}
	}
	return p.view(ctx, r)
}

// DeleteLoadBalancer implements sdk.Provider: the NLB, then its target
// group, then wait until AWS has let go of the address (the NLB's network
// interface outlives the NLB for a while), so that a rollback can attach
// it to an instance at once.
func (p *Provider) DeleteLoadBalancer(ctx context.Context, id string) error {
	r, err := p.loadBalancer(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := p.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(r.arn())}); err != nil {
		return mapError(err)
	}
	w := elb.NewLoadBalancersDeletedWaiter(p.elb, func(o *elb.LoadBalancersDeletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
	})
	if err := w.Wait(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{r.arn()}}, p.cfg.WaitTimeout.Duration); err != nil {
		return fmt.Errorf("waiting for load balancer %s to be deleted: %w", id, mapError(err))
	}
	err = p.waitFor(ctx, "target group "+r.targetGroup()+" to be deleted", func() (bool, error) {
		_, err := p.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(r.targetGroup())})
		switch err = mapError(err); {
		case err == nil, errors.Is(err, sdk.ErrNotFound):
			return true, nil
		case errors.Is(err, sdk.ErrFailedPrecondition): // ResourceInUse: the NLB is still letting go
			return false, nil
		}
		return false, err
	})
	if err != nil {
		return err
	}
	addr, _ := r.address()
	if err := p.waitFor(ctx, "address "+addr+" to be released", func() (bool, error) {
		_, h, err := p.address(ctx, addr)
		return err == nil && h.released(), err
	}); err != nil {
		return err
	}
	return p.deleteLBGroups(ctx, r.lb.SecurityGroups)
}
