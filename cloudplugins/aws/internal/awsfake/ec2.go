package awsfake

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"
)

var (
	instanceID = regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)
	stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
)

func (s *Server) ec2(action string, q query) (any, *apiError) {
	switch action {
	case "DescribeInstances":
		return s.describeInstances(q)
	case "RunInstances":
		return s.runInstances(q)
	case "StopInstances":
		return s.changeState(q, map[string]string{"running": "stopping", "pending": ""}, "stopped")
	case "StartInstances":
		body, aerr := s.changeState(q, map[string]string{"stopped": "pending"}, "running")
		if aerr == nil {
			s.startFailures(q.list("InstanceId"))
		}
		return body, aerr
	case "TerminateInstances":
		return s.changeState(q, map[string]string{"running": "shutting-down", "stopped": "shutting-down", "pending": "shutting-down", "stopping": "shutting-down"}, "terminated")
	case "CreateImage":
		return s.createImage(q)
	case "DescribeImages":
		return s.describeImages(q)
	case "DeregisterImage":
		return s.deregisterImage(q)
	case "DescribeVolumes":
		return s.describeVolumes(q)
	case "DescribeSnapshots":
		return s.describeSnapshots(q)
	case "DeleteSnapshot":
		// "You cannot delete a snapshot of the root device of an EBS volume
		// used by a registered AMI. You must first de-register the AMI";
		// the fake refuses any snapshot a registered image maps.
		// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSnapshot.html
		id := q.Get("SnapshotId")
		if s.snapshots[id] == nil {
			return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
		if img := s.imageUsing(id); img != nil {
			return nil, errorf("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, img.id)
		}
		delete(s.snapshots, id)
		return struct {
			Return bool `xml:"return"`
		}{true}, nil
	case "DescribeAddresses":
		return s.describeAddresses(q)
	case "AssociateAddress":
		return s.associateAddress(q)
	case "DisassociateAddress":
		for _, e := range s.eips {
			if e.assoc != "" && e.assoc == q.Get("AssociationId") {
				e.assoc, e.eni = "", ""
				return struct {
					Return bool `xml:"return"`
				}{true}, nil
			}
		}
		return nil, errorf("InvalidAssociationID.NotFound", "The association ID '%s' does not exist", q.Get("AssociationId"))
	case "AssignPrivateIpAddresses":
		return s.assignPrivate(q)
	case "UnassignPrivateIpAddresses":
		e := s.enis[q.Get("NetworkInterfaceId")]
		if e == nil {
			return nil, errorf("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", q.Get("NetworkInterfaceId"))
		}
		for _, ip := range q.list("PrivateIpAddress") {
			i := slices.Index(e.ips, ip)
			if i <= 0 {
				return nil, errorf("InvalidParameterValue", "Some of the specified addresses are not assigned to interface %s", e.id)
			}
			e.ips = slices.Delete(e.ips, i, i+1)
		}
		return struct {
			Return bool `xml:"return"`
		}{true}, nil
	case "DescribeNetworkInterfaces":
		return s.describeENIs(q)
	case "DescribeSubnets":
		f := q.filters()
		if err := checkFilters(f); err != nil {
			return nil, err
		}
		var out []xSubnet
		for _, id := range q.list("SubnetId") {
			sn := s.subnets[id]
			if sn == nil {
				return nil, errorf("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
			}
			out = append(out, xSubnet{sn.id, s.seed.VPCID, sn.az, sn.cidr.String(), "available"})
		}
		return struct {
			Subnets []xSubnet `xml:"subnetSet>item"`
		}{out}, nil
	}
	return nil, errorf("InvalidAction", "%s", action)
}

// launch creates a pending instance with a primary interface.
func (s *Server) launch(sn *subnet, image, itype, ip string, userData []byte) *instance {
	in := &instance{
		id: s.newID("i-"), image: image, itype: itype, subnet: sn.id, az: sn.az, state: "pending",
		transition: s.after("running"), tags: map[string]string{}, devices: map[string]string{}, launch: time.Now().UTC(), userData: userData,
		// RunInstances' defaults: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceMetadataOptionsRequest.html
		httpTokens: "optional", hopLimit: 1, mdTags: "disabled",
	}
	root := &volume{id: s.newID("vol-"), size: 8, deleteOnTermin: true, volumeType: "gp3", iops: 3000, throughput: 125, az: sn.az}
	s.volumes[root.id] = root
	in.devices["/dev/xvda"] = root.id
	in.eni = &eni{id: s.newID("eni-"), subnet: sn.id, ifType: "interface", instance: in.id, ips: []string{ip}}
	s.enis[in.eni.id] = in.eni
	s.instances[in.id] = in
	return in
}

// freeIP returns the first address of the subnet nobody holds (AWS keeps
// the first four and the last).
func (s *Server) freeIP(sn *subnet) string {
	ip := sn.cidr.Addr().Next().Next().Next().Next()
	for ; sn.cidr.Contains(ip); ip = ip.Next() {
		if s.holderOf(ip.String()) == nil {
			return ip.String()
		}
	}
	return ""
}

func (s *Server) holderOf(ip string) *eni {
	for _, e := range s.enis {
		if slices.Contains(e.ips, ip) {
			return e
		}
	}
	return nil
}

func (s *Server) instanceXML(in *instance) xInstance {
	x := xInstance{
		InstanceID: in.id, ImageID: in.image, State: xState{stateCodes[in.state], in.state}, InstanceType: in.itype,
		Placement: xPlacement{in.az}, KeyName: in.key, LaunchTime: in.launch.Format(time.RFC3339), ClientToken: in.token,
		RootDeviceName: "/dev/xvda", RootDeviceType: "ebs", EbsOptimized: in.ebsOptimized, Tags: xTags(in.tags),
		Metadata: &xMetadata{State: "applied", HTTPTokens: in.httpTokens, HopLimit: in.hopLimit, HTTPEndpoint: "enabled", Tags: in.mdTags},
	}
	if in.rootType != "" {
		x.RootDeviceType = in.rootType
	}
	if in.reasonCode != "" {
		x.StateReason = &xStateReason{in.reasonCode, in.reasonMsg}
		x.Reason = in.reasonMsg
	}
	if in.profile != "" {
		x.Profile = &xProfile{in.profile}
	}
	for _, g := range in.groups {
		x.Groups = append(x.Groups, xGroup{g})
	}
	if in.state == "terminated" {
		return x
	}
	for _, dev := range slices.Sorted(maps.Keys(in.devices)) {
		v := s.volumes[in.devices[dev]]
		if v == nil {
			continue
		}
		state := v.attach
		if state == "" {
			state = "attached"
		}
		if state == "detached" {
			continue
		}
		x.BDM = append(x.BDM, xBDM{dev, xEBS{v.id, state, v.deleteOnTermin}})
	}
	x.SubnetID, x.VpcID, x.PrivateIP = in.subnet, s.seed.VPCID, in.eni.ips[0]
	ni := xInstanceENI{NetworkInterfaceID: in.eni.id, SubnetID: in.subnet, VpcID: s.seed.VPCID, PrivateIPAddress: in.eni.ips[0],
		Attachment: xAttachment{AttachmentID: "eni-attach-" + in.eni.id[4:], DeviceIndex: 0, Status: "attached"}}
	for i, ip := range in.eni.ips {
		ni.PrivateIPs = append(ni.PrivateIPs, xPrivateIP{ip, i == 0})
	}
	x.ENIs = []xInstanceENI{ni}
	for _, e := range s.eips {
		if e.eni == in.eni.id {
			x.PublicIP = e.ip
		}
	}
	return x
}

func (s *Server) describeInstances(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "vpc-id", "instance-state-name"); err != nil {
		return nil, err
	}
	ids := q.list("InstanceId")
	for _, id := range ids {
		if !instanceID.MatchString(id) {
			return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
		}
		if s.instances[id] == nil {
			return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	var out []xReservation
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		in := s.instances[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if v, ok := f["vpc-id"]; ok && (in.state == "terminated" || !slices.Contains(v, s.seed.VPCID)) {
			continue
		}
		if v, ok := f["instance-state-name"]; ok && !slices.Contains(v, in.state) {
			continue
		}
		if !matchTags(in.tags, f) {
			continue
		}
		out = append(out, xReservation{ReservationID: "r-" + id[2:], OwnerID: account, Instances: []xInstance{s.instanceXML(in)}})
	}
	out, next := page(s, out, q.Get("NextToken"))
	return struct {
		Reservations []xReservation `xml:"reservationSet>item"`
		NextToken    string         `xml:"nextToken,omitempty"`
	}{out, next}, nil
}

func (s *Server) runInstances(q query) (any, *apiError) {
	if q.Get("MinCount") != "1" || q.Get("MaxCount") != "1" {
		return nil, errorf("InvalidParameterValue", "the fake launches one instance at a time")
	}
	token := q.Get("ClientToken")
	settings := fmt.Sprint(q.Get("ImageId"), q.Get("SubnetId"), q.Get("InstanceType"), q.list("SecurityGroupId"))
	if id, ok := s.tokens[token]; ok && token != "" {
		in := s.instances[id]
		if in.settings != settings {
			return nil, errorf("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
		}
		return s.reservation(in), nil
	}
	sn := s.subnets[q.Get("SubnetId")]
	if sn == nil {
		return nil, errorf("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", q.Get("SubnetId"))
	}
	if q.Get("InstanceType") == "" {
		return nil, errorf("InvalidParameterValue", "No instance type given (the fake has no default)")
	}
	var userData []byte
	if ud := q.Get("UserData"); ud != "" {
		var err error
		if userData, err = base64.StdEncoding.DecodeString(ud); err != nil {
			return nil, errorf("InvalidUserData.Malformed", "User data is not valid base64")
		}
		if len(userData) > 16<<10 {
			return nil, errorf("InvalidParameterValue", "User data is limited to 16384 bytes")
		}
	}
	devices, aerr := s.launchVolumes(q)
	if aerr != nil {
		return nil, aerr
	}
	ip := q.Get("PrivateIpAddress")
	if ip == "" {
		ip = s.freeIP(sn)
	} else if a, err := netip.ParseAddr(ip); err != nil || !sn.cidr.Contains(a) {
		return nil, errorf("InvalidParameterValue", "Address %s does not fall within the subnet's address range", ip)
	} else if s.holderOf(ip) != nil {
		return nil, errorf("InvalidIPAddress.InUse", "Address %s is in use.", ip)
	}
	in := s.launch(sn, q.Get("ImageId"), q.Get("InstanceType"), ip, userData)
	in.token, in.key, in.groups = token, q.Get("KeyName"), q.list("SecurityGroupId")
	in.eni.groups = in.groups
	in.profile = q.Get("IamInstanceProfile.Arn")
	if n := q.Get("IamInstanceProfile.Name"); n != "" {
		in.profile = "arn:aws:iam::" + account + ":instance-profile/" + n
	}
	for _, dev := range slices.Sorted(maps.Keys(devices)) {
		v := devices[dev]
		if old := in.devices[dev]; old != "" {
			delete(s.volumes, old) // the image's root replaces the default one
		}
		v.id, v.az = s.newID("vol-"), sn.az
		s.volumes[v.id] = v
		in.devices[dev] = v.id
	}
	in.ebsOptimized = q.Get("EbsOptimized") == "true"
	if v := q.Get("MetadataOptions.HttpTokens"); v != "" {
		in.httpTokens = v
	}
	if v := q.Get("MetadataOptions.InstanceMetadataTags"); v != "" {
		in.mdTags = v
	}
	in.hopLimit = q.int("MetadataOptions.HttpPutResponseHopLimit", in.hopLimit)
	// The call succeeds; the launch fails afterwards.
	if code, msg := s.launchFailure(s.volumesOf(in)); code != "" {
		in.transition = s.after("terminated")
		in.reasonCode, in.reasonMsg = code, msg
	}
	in.settings = settings
	if tags := q.tagSpecs()["instance"]; tags != nil {
		in.tags = tags
	}
	if token != "" {
		s.tokens[token] = in.id
	}
	return s.reservation(in), nil
}

// launchVolumes returns the volumes RunInstances creates besides the
// default root volume, by device: those of the image's block device
// mappings when it is one of the account's images, then those of the
// request's, which override the image's device by device
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/block-device-mapping-concepts.html).
// A volume from a snapshot keeps the snapshot's encryption and key: the
// request cannot pass Encrypted or KmsKeyId (shapes.go), and "a
// RunInstances action maintains the existing encryption state of an AMI's
// source snapshots while restoring EBS volumes from them"
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/AMIEncryption.html).
func (s *Server) launchVolumes(q query) (map[string]*volume, *apiError) {
	devices := map[string]*volume{}
	if img := s.images[q.Get("ImageId")]; img != nil {
		switch img.state {
		case "available":
		case "deregistered":
			return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", img.id)
		default:
			// Our reading: AWS refuses to launch an image that is not available.
			return nil, errorf("InvalidAMIID.Unavailable", "The image '%s' is %s", img.id, img.state)
		}
		for _, m := range img.bdms {
			sn := s.snapshots[m.snapshot]
			if sn == nil {
				return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' of image %s does not exist.", m.snapshot, img.id)
			}
			devices[m.device] = &volume{snapshot: sn.id, size: m.size, volumeType: m.volumeType, iops: m.iops, throughput: m.throughput,
				deleteOnTermin: m.deleteOnTermination, encrypted: sn.encrypted, kmsKey: sn.kmsKey}
		}
	}
	for _, p := range q.structs("BlockDeviceMapping") {
		dev := q.Get(p + "DeviceName")
		v := devices[dev]
		if id := q.Get(p + "Ebs.SnapshotId"); id != "" {
			sn := s.snapshots[id]
			if sn == nil {
				return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
			}
			if sn.state != "completed" {
				return nil, errorf("IncorrectState", "Snapshot '%s' is not completed", sn.id)
			}
			// The type when the mapping names none: our reading (gp2,
			// EC2's long-standing default).
			v = &volume{snapshot: sn.id, size: sn.size, volumeType: "gp2", encrypted: sn.encrypted, kmsKey: sn.kmsKey}
		} else if v == nil {
			return nil, errorf("InvalidBlockDeviceMapping", "the fake creates the volume at %s from a snapshot only", dev)
		} else {
			c := *v
			v = &c
		}
		if n := q.int(p+"Ebs.VolumeSize", 0); n != 0 {
			if n < v.size {
				return nil, errorf("InvalidBlockDeviceMapping", "Volume of size %dGB is smaller than snapshot '%s', expect size >= %dGB", n, v.snapshot, v.size)
			}
			v.size = n
		}
		if t := q.Get(p + "Ebs.VolumeType"); t != "" {
			v.volumeType = t
		}
		v.iops = q.int(p+"Ebs.Iops", v.iops)
		v.throughput = q.int(p+"Ebs.Throughput", v.throughput)
		if d := q.Get(p + "Ebs.DeleteOnTermination"); d != "" {
			v.deleteOnTermin = d == "true"
		}
		devices[dev] = v
	}
	return devices, nil
}

// volumesOf returns an instance's volumes.
func (s *Server) volumesOf(in *instance) []*volume {
	var out []*volume
	for _, id := range in.devices {
		out = append(out, s.volumes[id])
	}
	return out
}

// startFailures fails the start of the instances that just went pending
// whose volumes' KMS key the caller cannot use: they go back to stopped
// with the state reason (launchFailure).
func (s *Server) startFailures(ids []string) {
	for _, id := range ids {
		in := s.instances[id]
		if in == nil || in.state != "pending" {
			continue
		}
		in.reasonCode, in.reasonMsg = "", ""
		if code, msg := s.launchFailure(s.volumesOf(in)); code != "" {
			in.transition = s.after("stopped")
			in.reasonCode, in.reasonMsg = code, msg
		}
	}
}

func (s *Server) reservation(in *instance) any {
	x := s.instanceXML(in)
	return struct {
		ReservationID string      `xml:"reservationId"`
		OwnerID       string      `xml:"ownerId"`
		Instances     []xInstance `xml:"instancesSet>item"`
	}{"r-" + in.id[2:], account, []xInstance{x}}
}

// changeState starts a transition: from maps a state to the transitional
// one ("" = refuse), final is where it ends. Instances already in final
// (or in its transitional state) are left alone, as AWS does.
func (s *Server) changeState(q query, from map[string]string, final string) (any, *apiError) {
	var changes []xStateChange
	for _, id := range q.list("InstanceId") {
		in := s.instances[id]
		if !instanceID.MatchString(id) {
			return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
		}
		if in == nil {
			return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		prev := in.state
		if in.state != final && in.next != final {
			mid, ok := from[in.state]
			if !ok || mid == "" {
				return nil, errorf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be %s.", id, final)
			}
			in.state, in.transition = mid, s.after(final)
		}
		changes = append(changes, xStateChange{id, xState{stateCodes[in.state], in.state}, xState{stateCodes[prev], prev}})
	}
	return struct {
		Instances []xStateChange `xml:"instancesSet>item"`
	}{changes}, nil
}

// terminated frees what a terminated instance held.
func (s *Server) terminated(in *instance) {
	for _, e := range s.eips {
		if e.eni == in.eni.id {
			e.assoc, e.eni = "", ""
		}
	}
	delete(s.enis, in.eni.id)
	for _, v := range in.devices {
		if s.volumes[v] != nil && s.volumes[v].deleteOnTermin {
			delete(s.volumes, v)
		}
	}
}

func (s *Server) snapshotXML(sn *snapshot) xSnapshot {
	progress := "0%"
	if sn.state == "completed" {
		progress = "100%"
	}
	return xSnapshot{SnapshotID: sn.id, VolumeID: sn.volume, Status: sn.state, StartTime: sn.start.Format(time.RFC3339), Progress: progress,
		OwnerID: account, VolumeSize: sn.size, Description: sn.description, Encrypted: sn.encrypted, KmsKeyID: sn.kmsKey, Tags: xTags(sn.tags)}
}

func (s *Server) describeSnapshots(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f); err != nil {
		return nil, err
	}
	ids := q.list("SnapshotId")
	for _, id := range ids {
		if s.snapshots[id] == nil {
			return nil, errorf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
	}
	if owners := q.list("Owner"); len(owners) > 0 && !slices.Contains(owners, "self") && !slices.Contains(owners, account) {
		ids = []string{"none"}
	}
	var out []xSnapshot
	for _, sn := range s.snapshots {
		if (len(ids) == 0 || slices.Contains(ids, sn.id)) && matchTags(sn.tags, f) {
			out = append(out, s.snapshotXML(sn))
		}
	}
	slices.SortFunc(out, func(a, b xSnapshot) int { return compare(a.SnapshotID, b.SnapshotID) })
	out, next := page(s, out, q.Get("NextToken"))
	return struct {
		Snapshots []xSnapshot `xml:"snapshotSet>item"`
		NextToken string      `xml:"nextToken,omitempty"`
	}{out, next}, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) associate(e *eip, ni *eni) {
	e.eni = ni.id
	e.assoc = "eipassoc-" + strconv.Itoa(s.seq) + e.alloc[9:]
}

func (s *Server) addressXML(e *eip) xAddress {
	x := xAddress{PublicIP: e.ip, AllocationID: e.alloc, Domain: "vpc", AssociationID: e.assoc, NetworkInterfaceID: e.eni}
	if ni := s.enis[e.eni]; ni != nil {
		x.PrivateIPAddress = ni.ips[0]
		x.NetworkInterfaceOwnerID = account
		if ni.instance != "" {
			x.InstanceID = ni.instance
		} else {
			x.NetworkInterfaceOwnerID = "amazon-elb"
		}
	}
	return x
}

func (s *Server) describeAddresses(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "domain"); err != nil {
		return nil, err
	}
	allocs, ips := q.list("AllocationId"), q.list("PublicIp")
	var out []xAddress
	for _, id := range allocs {
		e := s.eips[id]
		if e == nil {
			return nil, errorf("InvalidAllocationID.NotFound", "The allocation IDs '%s' do not exist", id)
		}
		out = append(out, s.addressXML(e))
	}
	for _, ip := range ips {
		var found *eip
		for _, e := range s.eips {
			if e.ip == ip {
				found = e
			}
		}
		if found == nil {
			return nil, errorf("InvalidAddress.NotFound", "Address '%s' not found.", ip)
		}
		out = append(out, s.addressXML(found))
	}
	if len(allocs)+len(ips) == 0 {
		for _, e := range s.eips {
			out = append(out, s.addressXML(e))
		}
	}
	slices.SortFunc(out, func(a, b xAddress) int { return compare(a.AllocationID, b.AllocationID) })
	return struct {
		Addresses []xAddress `xml:"addressesSet>item"`
	}{out}, nil
}

func (s *Server) associateAddress(q query) (any, *apiError) {
	e := s.eips[q.Get("AllocationId")]
	if e == nil {
		return nil, errorf("InvalidAllocationID.NotFound", "The allocation IDs '%s' do not exist", q.Get("AllocationId"))
	}
	in := s.instances[q.Get("InstanceId")]
	if in == nil {
		return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", q.Get("InstanceId"))
	}
	if in.state != "running" && in.state != "stopped" {
		return nil, errorf("IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation.", in.id)
	}
	if e.eni != "" && e.eni != in.eni.id && q.Get("AllowReassociation") != "true" {
		return nil, errorf("Resource.AlreadyAssociated", "resource %s is already associated with associate-id %s", e.alloc, e.assoc)
	}
	if e.eni != in.eni.id {
		s.associate(e, in.eni)
	}
	return struct {
		Return        bool   `xml:"return"`
		AssociationID string `xml:"associationId"`
	}{true, e.assoc}, nil
}

func (s *Server) assignPrivate(q query) (any, *apiError) {
	ni := s.enis[q.Get("NetworkInterfaceId")]
	if ni == nil {
		return nil, errorf("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", q.Get("NetworkInterfaceId"))
	}
	sn := s.subnets[ni.subnet]
	var assigned []struct {
		IP string `xml:"privateIpAddress"`
	}
	for _, ip := range q.list("PrivateIpAddress") {
		a, err := netip.ParseAddr(ip)
		if err != nil || !sn.cidr.Contains(a) {
			return nil, errorf("InvalidParameterValue", "Address %s does not fall within the subnet's address range", ip)
		}
		if h := s.holderOf(ip); h != nil && h != ni {
			return nil, errorf("InvalidParameterValue", "Address %s is already assigned to %s", ip, h.id)
		}
		if !slices.Contains(ni.ips, ip) {
			ni.ips = append(ni.ips, ip)
		}
		assigned = append(assigned, struct {
			IP string `xml:"privateIpAddress"`
		}{ip})
	}
	return struct {
		NetworkInterfaceID string `xml:"networkInterfaceId"`
		Assigned           any    `xml:"assignedPrivateIpAddressesSet>item"`
		Return             bool   `xml:"return"`
	}{ni.id, assigned, true}, nil
}

func (s *Server) describeENIs(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "vpc-id", "addresses.private-ip-address"); err != nil {
		return nil, err
	}
	var out []xENI
	for _, ni := range s.enis {
		if v, ok := f["addresses.private-ip-address"]; ok && !slices.ContainsFunc(ni.ips, func(ip string) bool { return slices.Contains(v, ip) }) {
			continue
		}
		if v, ok := f["vpc-id"]; ok && !slices.Contains(v, s.seed.VPCID) {
			continue
		}
		sn := s.subnets[ni.subnet]
		x := xENI{NetworkInterfaceID: ni.id, SubnetID: ni.subnet, VpcID: s.seed.VPCID, AvailabilityZone: sn.az, Description: ni.description,
			InterfaceType: ni.ifType, Status: "in-use", PrivateIPAddress: ni.ips[0], RequesterManaged: ni.ifType != "interface"}
		if ni.instance != "" {
			x.Attachment = &xAttachment{AttachmentID: "eni-attach-" + ni.id[4:], InstanceID: ni.instance, DeviceIndex: 0, Status: "attached"}
		}
		for i, ip := range ni.ips {
			x.PrivateIPs = append(x.PrivateIPs, xPrivateIP{ip, i == 0})
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b xENI) int { return compare(a.NetworkInterfaceID, b.NetworkInterfaceID) })
	return struct {
		ENIs []xENI `xml:"networkInterfaceSet>item"`
	}{out}, nil
}
