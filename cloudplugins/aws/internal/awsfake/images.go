package awsfake

import (
	"maps"
	"path"
	"regexp"
	"slices"
	"time"
)

// AMIs the account made with CreateImage: an image of every EBS volume of
// an instance, one snapshot per volume. Images the fake did not make (the
// seed's base image, any other ami- id) are not modelled: RunInstances
// boots them with an unencrypted 8 GiB root volume, DescribeImages does
// not know them.

var (
	imageID = regexp.MustCompile(`^ami-[0-9a-f]{8}([0-9a-f]{9})?$`)
	// amiName: "3-128 alphanumeric characters, parentheses (()), square
	// brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-),
	// single quotes ('), at-signs (@), or underscores(_)",
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html
	amiName = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)
)

type image struct {
	id, name, description, state, instance string
	transition
	root    string // root device name
	bdms    []imageBDM
	tags    map[string]string
	created time.Time
	// fail makes the image end failed instead of available (FailImages).
	fail                  bool
	reasonCode, reasonMsg string
}

type imageBDM struct {
	device, snapshot, volumeType string
	size, iops, throughput       int
	deleteOnTermination          bool
	encrypted                    bool
}

type xImageEBS struct {
	SnapshotID          string `xml:"snapshotId"`
	VolumeSize          int    `xml:"volumeSize"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	VolumeType          string `xml:"volumeType"`
	Iops                int    `xml:"iops,omitempty"`
	Throughput          int    `xml:"throughput,omitempty"`
	// DescribeImages reports whether a mapping's snapshot is encrypted,
	// not its key (DescribeSnapshots does).
	Encrypted bool `xml:"encrypted"`
}

type xImageBDM struct {
	DeviceName string    `xml:"deviceName"`
	EBS        xImageEBS `xml:"ebs"`
}

type xImage struct {
	ImageID            string        `xml:"imageId"`
	Location           string        `xml:"imageLocation"`
	State              string        `xml:"imageState"`
	OwnerID            string        `xml:"imageOwnerId"`
	CreationDate       string        `xml:"creationDate"`
	Public             bool          `xml:"isPublic"`
	Architecture       string        `xml:"architecture"`
	ImageType          string        `xml:"imageType"`
	SourceInstanceID   string        `xml:"sourceInstanceId,omitempty"`
	Name               string        `xml:"name"`
	Description        string        `xml:"description,omitempty"`
	RootDeviceType     string        `xml:"rootDeviceType"`
	RootDeviceName     string        `xml:"rootDeviceName"`
	BDM                []xImageBDM   `xml:"blockDeviceMapping>item"`
	VirtualizationType string        `xml:"virtualizationType"`
	StateReason        *xStateReason `xml:"stateReason,omitempty"`
	Tags               []xTag        `xml:"tagSet>item"`
}

// FailImages makes the next n images CreateImage makes end failed
// instead of available, as AWS's occasionally do.
func (s *Server) FailImages(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.imageFailures = n
}

// EncryptSeedVolumes makes every volume of the seed instance encrypted
// with the customer managed KMS key keyARN, as if it had been launched
// with encrypted volumes.
func (s *Server) EncryptSeedVolumes(keyARN string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.instances[s.seed.Instance].devices {
		s.volumes[id].encrypted, s.volumes[id].kmsKey = true, keyARN
	}
}

// LegacySnapshot makes a completed EBS snapshot of an instance's volume at
// device, tagged with tags, as the plugin's earlier releases made disk
// snapshots (CreateSnapshot of the data volume), and returns its id.
func (s *Server) LegacySnapshot(instanceID, device string, tags map[string]string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[s.instances[instanceID].devices[device]]
	sn := s.snapshotOf(v, "", maps.Clone(tags))
	sn.state, sn.next = "completed", ""
	return sn.id
}

// snapshotOf starts a snapshot of v: pending, completed after Settle, with
// v's size and encryption ("Snapshots that are taken from encrypted
// volumes are automatically encrypted", with the volume's key:
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSnapshot.html).
func (s *Server) snapshotOf(v *volume, description string, tags map[string]string) *snapshot {
	if tags == nil {
		tags = map[string]string{}
	}
	sn := &snapshot{id: s.newID("snap-"), volume: v.id, state: "pending", transition: s.after("completed"), size: v.size,
		tags: tags, start: time.Now().UTC(), description: description, encrypted: v.encrypted, kmsKey: v.kmsKey,
		volumeType: v.volumeType, iops: v.iops, throughput: v.throughput}
	s.snapshots[sn.id] = sn
	return sn
}

// createImage, as https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html
// describes it:
//   - the instance must be running or stopped, and EBS-backed;
//   - Name must match amiName (InvalidAMIName.Malformed) and be unique
//     among the account's images in the region (InvalidAMIName.Duplicate;
//     a deregistered image's name is free again at once here, after a
//     while on AWS);
//   - every attached EBS volume becomes a snapshot with the volume's size,
//     type and encryption; TagSpecification ResourceType image tags the
//     image, ResourceType snapshot every snapshot;
//   - BlockDeviceMapping may change only the DeleteOnTermination of the
//     instance's volumes ("The only option that can be changed for
//     existing mappings or snapshots is DeleteOnTermination");
//   - the image is pending until its snapshots complete, then available.
//
// The snapshots' description is AWS's own wording as DescribeSnapshots
// shows it ("Created by CreateImage(i-…) for ami-…").
func (s *Server) createImage(q query) (any, *apiError) {
	in, aerr := s.instanceFor(q.Get("InstanceId"))
	if aerr != nil {
		return nil, aerr
	}
	if in.state != "running" && in.state != "stopped" {
		return nil, errorf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be imaged.", in.id)
	}
	if in.rootType == "instance-store" {
		return nil, errorf("InvalidParameterValue", "Instance %s is instance store-backed; CreateImage images EBS-backed instances", in.id)
	}
	name := q.Get("Name")
	if !amiName.MatchString(name) {
		return nil, errorf("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, and may only contain letters, numbers, and ()[] ./-'@_")
	}
	for _, img := range s.images {
		if img.name == name && img.state != "deregistered" {
			return nil, errorf("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, img.id)
		}
	}
	keep := map[string]bool{}
	for _, p := range q.structs("BlockDeviceMapping") {
		dev := q.Get(p + "DeviceName")
		if in.devices[dev] == "" {
			return nil, errorf("InvalidBlockDeviceMapping", "device %s is not a volume of %s", dev, in.id)
		}
		keep[dev] = q.Get(p+"Ebs.DeleteOnTermination") == "true"
	}
	tags := q.tagSpecs()
	img := &image{id: s.newID("ami-"), name: name, description: q.Get("Description"), state: "pending", transition: s.after("available"),
		instance: in.id, root: "/dev/xvda", tags: tags["image"], created: time.Now().UTC()}
	if img.tags == nil {
		img.tags = map[string]string{}
	}
	if s.imageFailures > 0 {
		s.imageFailures--
		img.fail = true
	}
	for _, dev := range slices.Sorted(maps.Keys(in.devices)) {
		v := s.volumes[in.devices[dev]]
		if v == nil || v.attach == "detached" {
			continue // not attached: not the instance's any more
		}
		sn := s.snapshotOf(v, "Created by CreateImage("+in.id+") for "+img.id, maps.Clone(tags["snapshot"]))
		dot, ok := keep[dev]
		if !ok {
			dot = v.deleteOnTermin
		}
		img.bdms = append(img.bdms, imageBDM{device: dev, snapshot: sn.id, size: v.size, volumeType: v.volumeType, iops: v.iops,
			throughput: v.throughput, deleteOnTermination: dot, encrypted: v.encrypted})
	}
	s.images[img.id] = img
	return struct {
		ImageID string `xml:"imageId"`
	}{img.id}, nil
}

// advanceImages makes a pending image available (or failed) once its
// time has come and its snapshots are complete.
func (s *Server) advanceImages(now time.Time) {
	for _, img := range s.images {
		if img.next == "" || now.Before(img.until) {
			continue
		}
		done := true
		for _, m := range img.bdms {
			if sn := s.snapshots[m.snapshot]; sn != nil && sn.state != "completed" {
				done = false
			}
		}
		if !done {
			continue
		}
		img.state, img.next = img.next, ""
		if img.fail {
			// The code and message are the fake's; AWS's vary.
			img.state, img.reasonCode, img.reasonMsg = "failed", "Server.InternalError", "Server.InternalError: Internal error on snapshot"
		}
	}
}

func (s *Server) imageXML(img *image) xImage {
	x := xImage{ImageID: img.id, Location: account + "/" + img.name, State: img.state, OwnerID: account,
		CreationDate: img.created.Format("2006-01-02T15:04:05.000Z"), Architecture: "x86_64", ImageType: "machine",
		SourceInstanceID: img.instance, Name: img.name, Description: img.description, RootDeviceType: "ebs",
		RootDeviceName: img.root, VirtualizationType: "hvm", Tags: xTags(img.tags)}
	if img.reasonCode != "" {
		x.StateReason = &xStateReason{img.reasonCode, img.reasonMsg}
	}
	for _, m := range img.bdms {
		x.BDM = append(x.BDM, xImageBDM{m.device, xImageEBS{m.snapshot, m.size, m.deleteOnTermination, m.volumeType, m.iops, m.throughput, m.encrypted}})
	}
	return x
}

// describeImages, as https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeImages.html
// describes it: an ImageId that never existed is InvalidAMIID.NotFound
// (a malformed one InvalidAMIID.Malformed); "recently deregistered images
// appear in the returned results for a short interval and then return
// empty results" (the fake skips the interval); Owner self (or the account
// id) is the account's images, which are all the fake has; filters name
// (IAM-style * and ? wildcards), state, tag:K and tag-key.
func (s *Server) describeImages(q query) (any, *apiError) {
	f := q.filters()
	if err := checkFilters(f, "name", "state"); err != nil {
		return nil, err
	}
	ids := q.list("ImageId")
	for _, id := range ids {
		if !imageID.MatchString(id) {
			return nil, errorf("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
		}
		if s.images[id] == nil {
			return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
	}
	mine := true
	if owners := q.list("Owner"); len(owners) > 0 && !slices.Contains(owners, "self") && !slices.Contains(owners, account) {
		mine = false
	}
	var out []xImage
	for _, id := range slices.Sorted(maps.Keys(s.images)) {
		img := s.images[id]
		if !mine || img.state == "deregistered" || len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		if v, ok := f["name"]; ok && !slices.ContainsFunc(v, func(p string) bool { m, _ := path.Match(p, img.name); return m }) {
			continue
		}
		if v, ok := f["state"]; ok && !slices.Contains(v, img.state) {
			continue
		}
		if !matchTags(img.tags, f) {
			continue
		}
		out = append(out, s.imageXML(img))
	}
	out, next := page(s, out, q.Get("NextToken"))
	return struct {
		Images    []xImage `xml:"imagesSet>item"`
		NextToken string   `xml:"nextToken,omitempty"`
	}{out, next}, nil
}

// deregisterImage, as https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeregisterImage.html
// describes it: the image's snapshots stay (and DeleteSnapshot refuses one
// while a registered image uses it); instances launched from it are not
// affected. Deregistering it again is InvalidAMIID.Unavailable (our
// reading of the EC2 error code list), an unknown id InvalidAMIID.NotFound.
func (s *Server) deregisterImage(q query) (any, *apiError) {
	id := q.Get("ImageId")
	if !imageID.MatchString(id) {
		return nil, errorf("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", id)
	}
	img := s.images[id]
	switch {
	case img == nil:
		return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	case img.state == "deregistered":
		return nil, errorf("InvalidAMIID.Unavailable", "The image ID '%s' is no longer available", id)
	}
	img.state, img.next = "deregistered", ""
	return struct {
		Return bool `xml:"return"`
	}{true}, nil
}

// imageUsing returns the registered image that maps a snapshot, or nil.
func (s *Server) imageUsing(snapshotID string) *image {
	for _, img := range s.images {
		if img.state == "deregistered" {
			continue
		}
		for _, m := range img.bdms {
			if m.snapshot == snapshotID {
				return img
			}
		}
	}
	return nil
}
