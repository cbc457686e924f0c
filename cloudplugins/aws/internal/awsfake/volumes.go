package awsfake

import (
	"maps"
	"slices"
)

type xVolumeAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xVolume struct {
	VolumeID         string              `xml:"volumeId"`
	Size             int                 `xml:"size"`
	SnapshotID       string              `xml:"snapshotId"`
	AvailabilityZone string              `xml:"availabilityZone"`
	Status           string              `xml:"status"`
	Attachments      []xVolumeAttachment `xml:"attachmentSet>item"`
	VolumeType       string              `xml:"volumeType"`
	Iops             int                 `xml:"iops,omitempty"`
	Throughput       int                 `xml:"throughput,omitempty"`
	Encrypted        bool                `xml:"encrypted"`
	KmsKeyID         string              `xml:"kmsKeyId,omitempty"`
}

// SetVolumeAttachment forces the attachment state of a volume to its
// instance ("attaching", "detaching", "detached"; "attached" restores it),
// as an operator detaching it would.
func (s *Server) SetVolumeAttachment(volumeID, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.volumes[volumeID]; v != nil {
		v.attach = state
		if state == "attached" {
			v.attach = ""
		}
	}
}

// SetRootDeviceType makes an instance instance-store-backed
// ("instance-store"): its root device is no EBS volume any more, as for an
// instance launched from an instance-store-backed AMI.
func (s *Server) SetRootDeviceType(instanceID, rootType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[instanceID]
	if in == nil {
		return
	}
	in.rootType = rootType
	if rootType == "instance-store" {
		delete(s.volumes, in.devices["/dev/xvda"])
		delete(in.devices, "/dev/xvda")
	}
}

// instanceFor returns the instance of an InstanceId parameter.
func (s *Server) instanceFor(id string) (*instance, *apiError) {
	if !instanceID.MatchString(id) {
		return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: \"%s\"", id)
	}
	in := s.instances[id]
	if in == nil {
		return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	return in, nil
}

// holderOfVolume returns the live instance a volume is a device of.
func (s *Server) holderOfVolume(id string) (*instance, string) {
	for _, in := range s.instances {
		if in.state == "terminated" {
			continue
		}
		for dev, v := range in.devices {
			if v == id {
				return in, dev
			}
		}
	}
	return nil, ""
}

// describeVolumes, as https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeVolumes.html
// describes it: an unknown VolumeId is InvalidVolume.NotFound; a volume
// attached to an instance is in-use with one attachment (device, state,
// DeleteOnTermination), a detached one available with none; kmsKeyId is
// reported for encrypted volumes only. Filters: attachment.instance-id.
func (s *Server) describeVolumes(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "attachment.instance-id"); err != nil {
		return nil, err
	}
	ids := q.list("VolumeId")
	for _, id := range ids {
		if s.volumes[id] == nil {
			return nil, errorf("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
		}
	}
	var out []xVolume
	for _, id := range slices.Sorted(maps.Keys(s.volumes)) {
		v := s.volumes[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		x := xVolume{VolumeID: v.id, Size: v.size, SnapshotID: v.snapshot, AvailabilityZone: v.az, Status: "available",
			VolumeType: v.volumeType, Iops: v.iops, Throughput: v.throughput, Encrypted: v.encrypted, KmsKeyID: v.kmsKey}
		in, dev := s.holderOfVolume(id)
		if in != nil && v.attach != "detached" {
			state := v.attach
			if state == "" {
				state = "attached"
			}
			x.Status = "in-use"
			x.Attachments = []xVolumeAttachment{{v.id, in.id, dev, state, v.deleteOnTermin}}
		}
		if want, ok := f["attachment.instance-id"]; ok && (len(x.Attachments) == 0 || !slices.Contains(want, x.Attachments[0].InstanceID)) {
			continue
		}
		out = append(out, x)
	}
	out, next := page(s, out, q.Get("NextToken"))
	return struct {
		Volumes   []xVolume `xml:"volumeSet>item"`
		NextToken string    `xml:"nextToken,omitempty"`
	}{out, next}, nil
}
