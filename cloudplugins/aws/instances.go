package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

func tagMap(tags []types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// tagsOf turns labels plus the plugin's own tags (key, value, ...) into a
// service's tag type, sorted by key so that requests are reproducible.
func tagsOf[T any](mk func(k, v string) T, labels map[string]string, extra ...string) []T {
	all := maps.Clone(labels)
	if all == nil {
		all = map[string]string{}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		all[extra[i]] = extra[i+1]
	}
	var out []T
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, mk(k, all[k]))
	}
	return out
}

func ec2Tag(k, v string) types.Tag { return types.Tag{Key: aws.String(k), Value: aws.String(v)} }

// labelFilters selects resources carrying every label.
func labelFilters(labels map[string]string) []types.Filter {
	var f []types.Filter
	for k, v := range labels {
		f = append(f, types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	slices.SortFunc(f, func(a, b types.Filter) int { return strings.Compare(*a.Name, *b.Name) })
	return f
}

var instanceStates = map[types.InstanceStateName]sdk.InstanceState{
	types.InstanceStateNamePending:      sdk.InstancePending,
	types.InstanceStateNameRunning:      sdk.InstanceRunning,
	types.InstanceStateNameStopping:     sdk.InstanceStopping,
	types.InstanceStateNameStopped:      sdk.InstanceStopped,
	types.InstanceStateNameShuttingDown: sdk.InstanceTerminated,
	types.InstanceStateNameTerminated:   sdk.InstanceTerminated,
}

// primaryInterface is the instance's device-index-0 network interface.
func primaryInterface(i types.Instance) *types.InstanceNetworkInterface {
	for k, ni := range i.NetworkInterfaces {
		if ni.Attachment != nil && aws.ToInt32(ni.Attachment.DeviceIndex) == 0 {
			return &i.NetworkInterfaces[k]
		}
	}
	return nil
}

func (p *Provider) instanceView(i types.Instance) sdk.Instance {
	tags := tagMap(i.Tags)
	out := sdk.Instance{
		ID:        aws.ToString(i.InstanceId),
		Name:      tags["Name"],
		Image:     aws.ToString(i.ImageId),
		PrivateIP: aws.ToString(i.PrivateIpAddress),
		PublicIP:  aws.ToString(i.PublicIpAddress),
		Labels:    labelsOf(tags),
		CreatedAt: aws.ToTime(i.LaunchTime),
	}
	if img := tags[tagImage]; img != "" {
		out.Image = img // booted from a clone of an instance of img
	}
	if i.Placement != nil {
		out.Zone = aws.ToString(i.Placement.AvailabilityZone)
	}
	if i.State != nil {
		out.State = instanceStates[i.State.Name]
	}
	// The address triad reaches the node on is the managed (movable)
	// private address when the instance holds one.
	if ni := primaryInterface(i); ni != nil {
		for _, a := range ni.PrivateIpAddresses {
			if ip := aws.ToString(a.PrivateIpAddress); p.isPrivateAddress(ip) {
				out.PrivateIP = ip
			}
		}
	}
	for _, m := range i.BlockDeviceMappings {
		if aws.ToString(m.DeviceName) == p.cfg.DataDevice && m.Ebs != nil {
			out.DiskID = aws.ToString(m.Ebs.VolumeId)
		}
	}
	return out
}

// describeInstance returns one instance in the configured VPC.
func (p *Provider) describeInstance(ctx context.Context, id string) (types.Instance, error) {
	if !strings.HasPrefix(id, "i-") {
		return types.Instance{}, fmt.Errorf("%w: instance %q", sdk.ErrNotFound, id)
	}
	out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return types.Instance{}, mapError(err)
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			// A terminated instance has left its VPC.
			if vpc := aws.ToString(i.VpcId); vpc == p.cfg.VPCID || (vpc == "" && i.State != nil && i.State.Name == types.InstanceStateNameTerminated) {
				return i, nil
			}
			return types.Instance{}, fmt.Errorf("%w: instance %s is not in %s", sdk.ErrNotFound, id, p.cfg.VPCID)
		}
	}
	return types.Instance{}, fmt.Errorf("%w: instance %s", sdk.ErrNotFound, id)
}

// GetInstance implements sdk.Provider.
func (p *Provider) GetInstance(ctx context.Context, id string) (sdk.Instance, error) {
	i, err := p.describeInstance(ctx, id)
	if err != nil {
		return sdk.Instance{}, err
	}
	return p.instanceView(i), nil
}

// ListInstances implements sdk.Provider: the live (not terminated)
// instances of the configured VPC carrying every label.
func (p *Provider) ListInstances(ctx context.Context, labels map[string]string) ([]sdk.Instance, error) {
	filters := append([]types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{p.cfg.VPCID}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}, labelFilters(labels)...)
	var out []sdk.Instance
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				out = append(out, p.instanceView(i))
			}
		}
	}
	slices.SortFunc(out, func(a, b sdk.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// CreateInstance implements sdk.Provider: RunInstances with the token as
// ClientToken, the disks from the snapshot, the boot data as user data,
// IMDSv2 required, and whatever the configuration leaves unset (type,
// security groups, instance profile, key) plus EBS optimization and IMDS
// settings copied from the snapshot's source instance. A clone (ami-…)
// boots itself, every volume from its snapshots, unless the request names
// another image (a rolling upgrade): then that image's root and the
// clone's other volumes. An earlier release's snapshot (snap-…) boots the
// image with the data volume restored at DataDevice. It returns once the
// instance is running, and fails (instead of waiting out the timeout) when
// EC2 terminates it at launch.
func (p *Provider) CreateInstance(ctx context.Context, req sdk.CreateInstanceRequest) (sdk.Instance, error) {
	if err := checkToken(req.IdempotencyToken); err != nil {
		return sdk.Instance{}, err
	}
	subnet, ok := p.cfg.Subnets[req.Zone]
	if !ok {
		return sdk.Instance{}, fmt.Errorf("%w: zone %q has no subnet in the plugin configuration (zones: %v)", sdk.ErrInvalidArgument, req.Zone, p.cfg.zones())
	}
	if len(req.BootData) > sdk.MaxBootData {
		return sdk.Instance{}, fmt.Errorf("%w: boot data is %d bytes; EC2 user data holds %d", sdk.ErrInvalidArgument, len(req.BootData), sdk.MaxBootData)
	}
	var (
		in    *ec2.RunInstancesInput
		snaps []string // the snapshots the instance's volumes come from
		err   error
	)
	if strings.HasPrefix(req.DiskSnapshotID, "ami-") {
		in, snaps, err = p.launchClone(ctx, req)
	} else {
		in, snaps, err = p.launchDataSnapshot(ctx, req)
	}
	if err != nil {
		return sdk.Instance{}, err
	}
	in.SubnetId = aws.String(subnet)
	out, err := p.ec2.RunInstances(ctx, in)
	if err != nil {
		return sdk.Instance{}, mapError(err)
	}
	if len(out.Instances) != 1 {
		return sdk.Instance{}, fmt.Errorf("RunInstances returned %d instances, want 1", len(out.Instances))
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	keys := func(ctx context.Context) []string { return p.snapshotKeys(ctx, snaps) }
	if err := p.waitRunning(ctx, id, keys); err != nil {
		return sdk.Instance{}, err
	}
	return p.GetInstance(ctx, id)
}

// launchClone builds RunInstances' input for a clone.
func (p *Provider) launchClone(ctx context.Context, req sdk.CreateInstanceRequest) (*ec2.RunInstancesInput, []string, error) {
	img, err := p.describeClone(ctx, req.DiskSnapshotID)
	if err != nil {
		return nil, nil, err
	}
	if img.State != types.ImageStateAvailable {
		return nil, nil, fmt.Errorf("%w: disk snapshot %s is %s, not available", sdk.ErrFailedPrecondition, req.DiskSnapshotID, img.State)
	}
	tags := tagMap(img.Tags)
	in, err := p.launchSpec(ctx, req, tags)
	if err != nil {
		return nil, nil, err
	}
	var snaps []string
	if req.Image == "" || req.Image == tags[tagSourceImage] {
		// The clone itself: every volume, root included, from its
		// snapshots with their size, type and encryption (no mapping, so
		// nothing overrides the snapshots' KMS key).
		in.ImageId = img.ImageId
		for _, m := range img.BlockDeviceMappings {
			if m.Ebs != nil && m.Ebs.SnapshotId != nil {
				snaps = append(snaps, *m.Ebs.SnapshotId)
			}
		}
		// The image the instance stands for, which GetInstance reports.
		in.TagSpecifications[0].Tags = tagsOf(ec2Tag, req.Labels, "Name", req.Name, tagToken, req.IdempotencyToken, tagImage, tags[tagSourceImage])
		return in, snaps, nil
	}
	// Another image (a rolling upgrade): its root volume, the clone's
	// others. No Encrypted or KmsKeyId: a volume restored from a snapshot
	// keeps the snapshot's encryption and key.
	for _, m := range img.BlockDeviceMappings {
		if m.Ebs == nil || m.Ebs.SnapshotId == nil || aws.ToString(m.DeviceName) == aws.ToString(img.RootDeviceName) {
			continue
		}
		ebs := &types.EbsBlockDevice{
			SnapshotId: m.Ebs.SnapshotId, VolumeSize: m.Ebs.VolumeSize, VolumeType: m.Ebs.VolumeType, DeleteOnTermination: aws.Bool(true),
		}
		// RunInstances takes IOPS for io1, io2 and gp3 only, throughput
		// for gp3 only (DescribeImages reports gp2's baseline IOPS too).
		switch m.Ebs.VolumeType {
		case types.VolumeTypeGp3:
			ebs.Iops, ebs.Throughput = m.Ebs.Iops, m.Ebs.Throughput
		case types.VolumeTypeIo1, types.VolumeTypeIo2:
			ebs.Iops = m.Ebs.Iops
		}
		in.BlockDeviceMappings = append(in.BlockDeviceMappings, types.BlockDeviceMapping{DeviceName: m.DeviceName, Ebs: ebs})
		snaps = append(snaps, *m.Ebs.SnapshotId)
	}
	if len(snaps) == 0 {
		// Everything the source had lives on its root volume, which the
		// other image replaces: the instance would start empty.
		return nil, nil, fmt.Errorf("%w: disk snapshot %s has no volume besides the root (%s), and image %s brings its own root: an instance of it would have none of %s's state; boot the snapshot's source image %s, or move the state to a data volume at %s", sdk.ErrFailedPrecondition, req.DiskSnapshotID, aws.ToString(img.RootDeviceName), req.Image, tags[tagSourceInstance], tags[tagSourceImage], p.cfg.DataDevice)
	}
	return in, snaps, nil
}

// launchDataSnapshot builds RunInstances' input for an earlier release's
// disk snapshot: the data volume only, restored at DataDevice.
func (p *Provider) launchDataSnapshot(ctx context.Context, req sdk.CreateInstanceRequest) (*ec2.RunInstancesInput, []string, error) {
	snap, err := p.describeSnapshot(ctx, req.DiskSnapshotID)
	if err != nil {
		return nil, nil, err
	}
	if snap.State != types.SnapshotStateCompleted {
		return nil, nil, fmt.Errorf("%w: snapshot %s is %s, not completed", sdk.ErrFailedPrecondition, req.DiskSnapshotID, snap.State)
	}
	in, err := p.launchSpec(ctx, req, tagMap(snap.Tags))
	if err != nil {
		return nil, nil, err
	}
	in.BlockDeviceMappings = []types.BlockDeviceMapping{{
		DeviceName: aws.String(p.cfg.DataDevice),
		Ebs: &types.EbsBlockDevice{
			SnapshotId:          aws.String(req.DiskSnapshotID),
			VolumeType:          types.VolumeType(p.cfg.DataVolumeType),
			DeleteOnTermination: aws.Bool(true),
		},
	}}
	return in, []string{req.DiskSnapshotID}, nil
}

// launchSpec builds RunInstances' input, less the subnet and the disks;
// ImageId is the requested image or the snapshot's source image.
func (p *Provider) launchSpec(ctx context.Context, req sdk.CreateInstanceRequest, snapTags map[string]string) (*ec2.RunInstancesInput, error) {
	image := req.Image
	if image == "" {
		image = snapTags[tagSourceImage]
	}
	if image == "" {
		return nil, fmt.Errorf("%w: no image given and snapshot %s names no source image", sdk.ErrInvalidArgument, req.DiskSnapshotID)
	}
	in := &ec2.RunInstancesInput{
		ClientToken:  aws.String(req.IdempotencyToken),
		ImageId:      aws.String(image),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		InstanceType: types.InstanceType(p.cfg.InstanceType),
		// IMDSv2 only: the agent reads its boot data with a session token.
		MetadataOptions: &types.InstanceMetadataOptionsRequest{HttpTokens: types.HttpTokensStateRequired, HttpEndpoint: types.InstanceMetadataEndpointStateEnabled},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tagsOf(ec2Tag, req.Labels, "Name", req.Name, tagToken, req.IdempotencyToken)},
			{ResourceType: types.ResourceTypeVolume, Tags: tagsOf(ec2Tag, req.Labels, "Name", req.Name)},
		},
	}
	if len(req.BootData) > 0 {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString(req.BootData))
	}
	if req.PrivateIP != "" {
		in.PrivateIpAddress = aws.String(req.PrivateIP)
	}
	if len(p.cfg.SecurityGroupIDs) > 0 {
		in.SecurityGroupIds = p.cfg.SecurityGroupIDs
	}
	if p.cfg.IAMInstanceProfile != "" {
		in.IamInstanceProfile = instanceProfile(p.cfg.IAMInstanceProfile)
	}
	if p.cfg.KeyName != "" {
		in.KeyName = aws.String(p.cfg.KeyName)
	}
	// Copy the rest from the source instance (stopped, but still there
	// during a migration). Long after it, for a rolling upgrade, it may be
	// gone: then what the configuration sets is enough.
	srcID := snapTags[tagSourceInstance]
	src, err := p.describeInstance(ctx, srcID)
	if err != nil {
		if in.InstanceType != "" && in.SecurityGroupIds != nil && in.IamInstanceProfile != nil {
			return in, nil
		}
		return nil, fmt.Errorf("%w: snapshot %s: source instance %q to copy the instance type, security groups and profile from: %v (set them in cloud.config)", sdk.ErrInvalidArgument, req.DiskSnapshotID, srcID, err)
	}
	if in.InstanceType == "" {
		in.InstanceType = src.InstanceType
	}
	if in.SecurityGroupIds == nil {
		for _, g := range src.SecurityGroups {
			in.SecurityGroupIds = append(in.SecurityGroupIds, aws.ToString(g.GroupId))
		}
	}
	if in.IamInstanceProfile == nil && src.IamInstanceProfile != nil {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: src.IamInstanceProfile.Arn}
	}
	if in.KeyName == nil {
		in.KeyName = src.KeyName
	}
	if aws.ToBool(src.EbsOptimized) {
		in.EbsOptimized = aws.Bool(true)
	}
	if mo := src.MetadataOptions; mo != nil {
		// Pods that reach IMDS through the node need a hop limit above 1.
		in.MetadataOptions.HttpPutResponseHopLimit = mo.HttpPutResponseHopLimit
		if mo.InstanceMetadataTags == types.InstanceMetadataTagsStateEnabled {
			in.MetadataOptions.InstanceMetadataTags = mo.InstanceMetadataTags
		}
	}
	return in, nil
}

func instanceProfile(s string) *types.IamInstanceProfileSpecification {
	if strings.HasPrefix(s, "arn:") {
		return &types.IamInstanceProfileSpecification{Arn: aws.String(s)}
	}
	return &types.IamInstanceProfileSpecification{Name: aws.String(s)}
}

// kmsVolumeActions are what the README's IAM policy grants on the KMS
// keys of the clones' volumes: the actions "Permissions for users" in
// https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption-requirements.html
// lists for EBS encryption (its kms:ReEncrypt is IAM's ReEncryptFrom and
// ReEncryptTo).
var kmsVolumeActions = []string{
	"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
	"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo",
}

// waitRunning waits until an instance that was launched or started runs.
// EC2 accepts the call and may fail the launch afterwards: an instance
// whose volumes it cannot decrypt goes pending → terminated (RunInstances)
// or pending → stopped (StartInstances) with state reason
// Client.InternalError. The wait notices and says why, instead of waiting
// out WaitTimeout for a state the instance never reaches. volumeKeys
// names the KMS keys of its volumes, for that error.
func (p *Provider) waitRunning(ctx context.Context, id string, volumeKeys func(context.Context) []string) error {
	return p.waitFor(ctx, "instance "+id+" to run", func() (bool, error) {
		i, err := p.describeInstance(ctx, id)
		switch {
		case errors.Is(err, sdk.ErrNotFound):
			return false, nil // not visible yet right after RunInstances (EC2 is eventually consistent)
		case err != nil:
			return false, fmt.Errorf("waiting for instance %s to run: %w", id, err)
		}
		code := ""
		if i.StateReason != nil {
			code = aws.ToString(i.StateReason.Code)
		}
		switch i.State.Name {
		case types.InstanceStateNameRunning:
			return true, nil
		case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated, types.InstanceStateNameStopping:
			return false, p.launchFailed(ctx, i, volumeKeys)
		case types.InstanceStateNameStopped:
			// Stopped right after a start is a stale read, unless EC2 says
			// it failed the start.
			if code == "Client.InternalError" {
				return false, p.launchFailed(ctx, i, volumeKeys)
			}
		}
		return false, nil
	})
}

// launchFailed is the error of an instance EC2 did not let run.
func (p *Provider) launchFailed(ctx context.Context, i types.Instance, volumeKeys func(context.Context) []string) error {
	what := fmt.Sprintf("instance %s is %s instead of running (state reason %s)", aws.ToString(i.InstanceId), i.State.Name, stateReason(i.StateReason))
	code := ""
	if i.StateReason != nil {
		code = aws.ToString(i.StateReason.Code)
	}
	switch code {
	case "Client.InternalError":
		// What EC2 says when the caller cannot use the KMS key of a volume
		// (https://repost.aws/knowledge-center/encrypted-volumes-stops-immediately).
		if keys := volumeKeys(ctx); len(keys) > 0 {
			return fmt.Errorf("%w: %s: the likely cause is that the plugin's credentials cannot use the KMS key %s that encrypts its volumes. "+
				"The README's IAM policy grants %s on that key through ec2.%s.amazonaws.com (statements TriadUsesTheVolumesKMSKeys and TriadLetsEC2GrantOnTheVolumesKMSKeys, cloudplugins/aws/README.md): "+
				"add the key's ARN to their Resource, and check that the key is enabled and its key policy lets the account's IAM policies allow it (the default key policy does)",
				sdk.ErrPermissionDenied, what, strings.Join(keys, ", "), strings.Join(kmsVolumeActions, ", "), p.ec2.Options().Region)
		}
		return fmt.Errorf("%w: %s: EC2 could not launch it; if its volumes are encrypted with a customer managed KMS key, the plugin needs the README's KMS statements for that key (cloudplugins/aws/README.md)", sdk.ErrFailedPrecondition, what)
	case "Server.InsufficientInstanceCapacity", "Client.VolumeLimitExceeded":
		return fmt.Errorf("%w: %s", sdk.ErrQuota, what)
	}
	return fmt.Errorf("%w: %s", sdk.ErrFailedPrecondition, what)
}

// instanceKeys returns the KMS keys of an instance's volumes (best
// effort, for an error message).
func (p *Provider) instanceKeys(id string) func(context.Context) []string {
	return func(ctx context.Context) []string {
		i, err := p.describeInstance(ctx, id)
		if err != nil {
			return nil
		}
		vols, err := p.volumesOf(ctx, i)
		if err != nil {
			return nil
		}
		return volumeKeys(vols)
	}
}

// StopInstance implements sdk.Provider and returns once it is stopped.
func (p *Provider) StopInstance(ctx context.Context, id string) (sdk.Instance, error) {
	i, err := p.describeInstance(ctx, id)
	if err != nil {
		return sdk.Instance{}, err
	}
	switch i.State.Name {
	case types.InstanceStateNameStopped:
		return p.instanceView(i), nil
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated:
		return sdk.Instance{}, fmt.Errorf("%w: instance %s is %s", sdk.ErrFailedPrecondition, id, i.State.Name)
	case types.InstanceStateNamePending:
		// StopInstances refuses a pending instance (IncorrectInstanceState).
		if err := p.waitRunning(ctx, id, p.instanceKeys(id)); err != nil {
			return sdk.Instance{}, err
		}
	}
	if _, err := p.ec2.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}}); err != nil {
		return sdk.Instance{}, mapError(err)
	}
	w := ec2.NewInstanceStoppedWaiter(p.ec2, func(o *ec2.InstanceStoppedWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
	})
	if err := w.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, p.cfg.WaitTimeout.Duration); err != nil {
		return sdk.Instance{}, fmt.Errorf("waiting for instance %s to stop: %w", id, mapError(err))
	}
	return p.GetInstance(ctx, id)
}

// StartInstance implements sdk.Provider and returns once it is running.
func (p *Provider) StartInstance(ctx context.Context, id string) (sdk.Instance, error) {
	i, err := p.describeInstance(ctx, id)
	if err != nil {
		return sdk.Instance{}, err
	}
	switch i.State.Name {
	case types.InstanceStateNameRunning:
		return p.instanceView(i), nil
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated:
		return sdk.Instance{}, fmt.Errorf("%w: instance %s is %s", sdk.ErrFailedPrecondition, id, i.State.Name)
	case types.InstanceStateNameStopping:
		// StartInstances refuses a stopping instance (IncorrectInstanceState).
		if _, err := p.StopInstance(ctx, id); err != nil {
			return sdk.Instance{}, err
		}
	}
	if i.State.Name != types.InstanceStateNamePending {
		if _, err := p.ec2.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}}); err != nil {
			return sdk.Instance{}, mapError(err)
		}
	}
	if err := p.waitRunning(ctx, id, p.instanceKeys(id)); err != nil {
		return sdk.Instance{}, err
	}
	return p.GetInstance(ctx, id)
}

// DeleteInstance implements sdk.Provider: TerminateInstances, then wait
// until terminated, so its volumes (DeleteOnTermination) and primary
// private IP are free when it returns.
func (p *Provider) DeleteInstance(ctx context.Context, id string) error {
	if _, err := p.describeInstance(ctx, id); errors.Is(err, sdk.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		if err := mapError(err); !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
		return nil
	}
	w := ec2.NewInstanceTerminatedWaiter(p.ec2, func(o *ec2.InstanceTerminatedWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
	})
	if err := w.Wait(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, p.cfg.WaitTimeout.Duration); err != nil {
		return fmt.Errorf("waiting for instance %s to terminate: %w", id, mapError(err))
	}
	return nil
}
