package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// holder says what holds an address, beyond what sdk.Address shows.
type holder struct {
	instance string // instance holding it
	primary  bool   // private: it is the instance's primary private IP
	eni      string // private: the interface holding it
	assoc    string // public: the association to undo
	lb       string // a triad load balancer (ARN)
	// foreign names an interface triad manages nothing about (another
	// service's, or a load balancer still being deleted).
	foreign string
}

func (h holder) view(a sdk.Address) sdk.Address {
	a.InstanceID, a.LoadBalancerID = h.instance, h.lb
	if h.foreign != "" && h.instance == "" {
		// Not released; the id of whatever holds it is all triad can show.
		a.LoadBalancerID = h.foreign
	}
	return a
}

func (h holder) String() string {
	switch {
	case h.instance != "":
		return "instance " + h.instance
	case h.lb != "":
		return "load balancer " + h.lb
	case h.foreign != "":
		return "network interface " + h.foreign
	}
	return "nothing"
}

func (h holder) released() bool { return h.instance == "" && h.lb == "" && h.foreign == "" }

// address looks up id: one of the configured private IPs, an Elastic IP
// allocation id, or an Elastic IP's address.
func (p *Provider) address(ctx context.Context, id string) (sdk.Address, holder, error) {
	if p.isPrivateAddress(id) {
		return p.privateAddress(ctx, id)
	}
	in := &ec2.DescribeAddressesInput{}
	switch {
	case strings.HasPrefix(id, "eipalloc-"):
		in.AllocationIds = []string{id}
	case isIPv4(id):
		in.PublicIps = []string{id}
	default:
		return sdk.Address{}, holder{}, fmt.Errorf("%w: address %q is neither an Elastic IP nor one of cloud.config.privateAddresses %v", sdk.ErrNotFound, id, p.cfg.PrivateAddresses)
	}
	out, err := p.ec2.DescribeAddresses(ctx, in)
	if err != nil {
		err = mapError(err)
		if errors.Is(err, sdk.ErrNotFound) && isIPv4(id) {
			err = fmt.Errorf("%w: %s is no Elastic IP of this account and not one of cloud.config.privateAddresses %v", sdk.ErrNotFound, id, p.cfg.PrivateAddresses)
		}
		return sdk.Address{}, holder{}, err
	}
	if len(out.Addresses) != 1 {
		return sdk.Address{}, holder{}, fmt.Errorf("%w: Elastic IP %s", sdk.ErrNotFound, id)
	}
	return p.publicAddress(ctx, out.Addresses[0], nil)
}

func isIPv4(s string) bool {
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Is4()
}

// publicAddress describes an Elastic IP; lbs, if not nil, saves listing
// the load balancers again.
func (p *Provider) publicAddress(ctx context.Context, e types.Address, lbs []lbRecord) (sdk.Address, holder, error) {
	a := sdk.Address{ID: aws.ToString(e.AllocationId), IP: aws.ToString(e.PublicIp), Kind: sdk.AddressPublic}
	h := holder{instance: aws.ToString(e.InstanceId), assoc: aws.ToString(e.AssociationId)}
	if h.instance != "" || h.assoc == "" {
		return a, h, nil
	}
	// Associated with an interface, not an instance: a load balancer's.
	if lbs == nil {
		var err error
		if lbs, err = p.triadLoadBalancers(ctx); err != nil {
			return a, h, err
		}
	}
	for _, lb := range lbs {
		if lb.hasAddress(a.ID) {
			h.lb = lb.arn()
			return a, h, nil
		}
	}
	h.foreign = aws.ToString(e.NetworkInterfaceId)
	return a, h, nil
}

// privateAddress describes a managed private IP by the interface holding
// it, if any.
func (p *Provider) privateAddress(ctx context.Context, ip string) (sdk.Address, holder, error) {
	a := sdk.Address{ID: ip, IP: ip, Kind: sdk.AddressPrivate}
	out, err := p.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{p.cfg.VPCID}},
		{Name: aws.String("addresses.private-ip-address"), Values: []string{ip}},
	}})
	if err != nil {
		return a, holder{}, mapError(err)
	}
	var h holder
	for _, ni := range out.NetworkInterfaces {
		h.eni = aws.ToString(ni.NetworkInterfaceId)
		if ni.Attachment != nil && aws.ToString(ni.Attachment.InstanceId) != "" {
			h.instance = aws.ToString(ni.Attachment.InstanceId)
			h.primary = aws.ToString(ni.PrivateIpAddress) == ip
			return a, h, nil
		}
		if ni.InterfaceType == types.NetworkInterfaceTypeNetworkLoadBalancer {
			lbs, err := p.triadLoadBalancers(ctx)
			if err != nil {
				return a, h, err
			}
			for _, lb := range lbs {
				if lb.hasAddress(ip) {
					h.lb = lb.arn()
					return a, h, nil
				}
			}
		}
		h.foreign = h.eni
		return a, h, nil
	}
	return a, h, nil
}

// GetAddress implements sdk.Provider.
func (p *Provider) GetAddress(ctx context.Context, id string) (sdk.Address, error) {
	a, h, err := p.address(ctx, id)
	return h.view(a), err
}

// ListAddresses implements sdk.Provider: the region's Elastic IPs and the
// configured private addresses.
func (p *Provider) ListAddresses(ctx context.Context) ([]sdk.Address, error) {
	out, err := p.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []types.Filter{{Name: aws.String("domain"), Values: []string{"vpc"}}}})
	if err != nil {
		return nil, mapError(err)
	}
	lbs, err := p.triadLoadBalancers(ctx)
	if err != nil {
		return nil, err
	}
	var list []sdk.Address
	for _, e := range out.Addresses {
		a, h, err := p.publicAddress(ctx, e, lbs)
		if err != nil {
			return nil, err
		}
		list = append(list, h.view(a))
	}
	for _, ip := range p.cfg.PrivateAddresses {
		a, h, err := p.privateAddress(ctx, ip)
		if err != nil {
			return nil, err
		}
		list = append(list, h.view(a))
	}
	slices.SortFunc(list, func(a, b sdk.Address) int { return strings.Compare(a.ID, b.ID) })
	return list, nil
}

// ReleaseAddress implements sdk.Provider. Public: DisassociateAddress (the
// Elastic IP stays allocated). Private: UnassignPrivateIpAddresses (see
// README.md: the IP is then free in the subnet, not reserved).
func (p *Provider) ReleaseAddress(ctx context.Context, id string) (sdk.Address, error) {
	a, h, err := p.address(ctx, id)
	if err != nil {
		return sdk.Address{}, err
	}
	switch {
	case h.lb != "":
		return sdk.Address{}, fmt.Errorf("%w: address %s belongs to load balancer %s; delete the load balancer to free it", sdk.ErrFailedPrecondition, a.IP, h.lb)
	case h.instance == "" && h.foreign != "":
		return sdk.Address{}, fmt.Errorf("%w: address %s is held by network interface %s, which triad does not manage", sdk.ErrFailedPrecondition, a.IP, h.foreign)
	case h.released():
		return a, nil
	case h.primary:
		return sdk.Address{}, fmt.Errorf("%w: %s is the primary private IP of %s; AWS frees a primary IP only with its interface (terminating the instance), so triad cannot move it. Use a secondary private IP as the API endpoint (cloudplugins/aws/README.md)", sdk.ErrFailedPrecondition, a.IP, h.instance)
	}
	inst, err := p.describeInstance(ctx, h.instance)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return sdk.Address{}, err
	}
	if err == nil && inst.State.Name != types.InstanceStateNameStopped && inst.State.Name != types.InstanceStateNameTerminated {
		return sdk.Address{}, fmt.Errorf("%w: instance %s holding %s is %s; stop it first", sdk.ErrFailedPrecondition, h.instance, a.IP, inst.State.Name)
	}
	if a.Kind == sdk.AddressPublic {
		_, err = p.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(h.assoc)})
	} else {
		_, err = p.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(h.eni), PrivateIpAddresses: []string{a.IP}})
	}
	if err = mapError(err); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return sdk.Address{}, err
	}
	return p.GetAddress(ctx, id)
}

// AttachAddress implements sdk.Provider. Public: AssociateAddress with the
// instance. Private: AssignPrivateIpAddresses on its primary interface
// (the OS must configure the secondary IP, as ec2-net-utils and
// amazon-ec2-net-utils do).
func (p *Provider) AttachAddress(ctx context.Context, addressID, instanceID string) (sdk.Address, error) {
	a, h, err := p.address(ctx, addressID)
	if err != nil {
		return sdk.Address{}, err
	}
	switch {
	case h.instance == instanceID:
		return h.view(a), nil
	case !h.released():
		return sdk.Address{}, fmt.Errorf("%w: address %s is held by %s; release it first", sdk.ErrFailedPrecondition, a.IP, h)
	}
	inst, err := p.describeInstance(ctx, instanceID)
	if err != nil {
		return sdk.Address{}, err
	}
	if a.Kind == sdk.AddressPublic {
		_, err = p.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(a.ID), InstanceId: aws.String(instanceID), AllowReassociation: aws.Bool(false)})
	} else {
		ni := primaryInterface(inst)
		if ni == nil {
			return sdk.Address{}, fmt.Errorf("%w: instance %s has no primary network interface", sdk.ErrFailedPrecondition, instanceID)
		}
		_, err = p.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: ni.NetworkInterfaceId, PrivateIpAddresses: []string{a.IP}, AllowReassignment: aws.Bool(false)})
	}
	if err != nil {
		return sdk.Address{}, mapError(err)
	}
	return p.GetAddress(ctx, addressID)
}
