package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Clones: a disk snapshot is an AMI of the whole stopped instance, made
// with CreateImage (one EBS snapshot per volume, root and data), so that a
// new instance has what was installed on the root disk after the original
// was launched (container runtime, kubelet, triad-agent and its
// configuration, /var/lib/kubelet, /etc/kubernetes when it lives there),
// not only the data volume.

const (
	// tagClone, on a clone's snapshots, is the clone's AMI name: it finds
	// them once the AMI is gone.
	tagClone = tagPrefix + "clone"
	// tagImage, on an instance booted from a clone, is the image the
	// instance stands for (the clone's source image): what GetInstance
	// reports, not the clone's AMI id.
	tagImage = tagPrefix + "image"
)

// cloneName is the AMI name of the clone made under an idempotency token.
// CreateImage takes no client token, but AMI names are unique per account
// and region: a retry finds the first clone by name, and a concurrent
// create with the same token fails with InvalidAMIName.Duplicate instead
// of making a second one.
func cloneName(token string) string {
	h := sha256.Sum256([]byte(token))
	return "triad-" + hex.EncodeToString(h[:16])
}

var imageStates = map[types.ImageState]sdk.DiskSnapshotState{
	types.ImageStatePending:   sdk.DiskSnapshotPending,
	types.ImageStateTransient: sdk.DiskSnapshotPending,
	types.ImageStateAvailable: sdk.DiskSnapshotReady,
	types.ImageStateFailed:    sdk.DiskSnapshotError,
	types.ImageStateError:     sdk.DiskSnapshotError,
	types.ImageStateInvalid:   sdk.DiskSnapshotError,
	types.ImageStateDisabled:  sdk.DiskSnapshotError,
}

func failed(s types.ImageState) bool { return imageStates[s] == sdk.DiskSnapshotError }

// isClone reports whether an AMI is a clone triad made (and may delete).
func isClone(img types.Image) bool {
	_, ok := tagMap(img.Tags)[tagSourceInstance]
	return ok
}

func imageView(img types.Image) sdk.DiskSnapshot {
	tags := tagMap(img.Tags)
	var size int64
	for _, m := range img.BlockDeviceMappings {
		if m.Ebs != nil {
			size += int64(aws.ToInt32(m.Ebs.VolumeSize)) << 30
		}
	}
	created, _ := time.Parse(time.RFC3339, aws.ToString(img.CreationDate))
	return sdk.DiskSnapshot{
		ID:               aws.ToString(img.ImageId),
		SourceInstanceID: tags[tagSourceInstance],
		SourceImage:      tags[tagSourceImage],
		State:            imageStates[img.State],
		SizeBytes:        size,
		Labels:           labelsOf(tags),
		CreatedAt:        created,
	}
}

// describeImage returns one of the account's AMIs; a deregistered one is
// not found.
func (p *Provider) describeImage(ctx context.Context, id string) (types.Image, error) {
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}, Owners: []string{"self"}})
	if err != nil {
		return types.Image{}, mapError(err)
	}
	for _, img := range out.Images {
		if img.State != types.ImageStateDeregistered {
			return img, nil
		}
	}
	return types.Image{}, fmt.Errorf("%w: disk snapshot %s", sdk.ErrNotFound, id)
}

// describeClone returns a clone triad made.
func (p *Provider) describeClone(ctx context.Context, id string) (types.Image, error) {
	img, err := p.describeImage(ctx, id)
	if err == nil && !isClone(img) {
		err = fmt.Errorf("%w: AMI %s is not a disk snapshot triad made (no %s tag)", sdk.ErrNotFound, id, tagSourceInstance)
	}
	return img, err
}

// images lists the account's AMIs matching filters, deregistered ones
// left out.
func (p *Provider) images(ctx context.Context, filters ...types.Filter) ([]types.Image, error) {
	var out []types.Image
	pages := ec2.NewDescribeImagesPaginator(p.ec2, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		for _, img := range page.Images {
			if img.State != types.ImageStateDeregistered {
				out = append(out, img)
			}
		}
	}
	return out, nil
}

// cloneNamed returns the clone with an AMI name, or nil.
func (p *Provider) cloneNamed(ctx context.Context, name string) (*types.Image, error) {
	found, err := p.images(ctx, types.Filter{Name: aws.String("name"), Values: []string{name}})
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return &found[0], nil
}

// createClone makes the AMI of the stopped instance under the request's
// token and returns its id (the first one's, when a concurrent call made
// it).
func (p *Provider) createClone(ctx context.Context, req sdk.CreateDiskSnapshotRequest, name string) (string, error) {
	inst, err := p.describeInstance(ctx, req.InstanceID)
	if err != nil {
		return "", err
	}
	if inst.State.Name != types.InstanceStateNameStopped {
		return "", fmt.Errorf("%w: instance %s is %s; snapshot a stopped instance (its disks are consistent only then)", sdk.ErrFailedPrecondition, req.InstanceID, inst.State.Name)
	}
	if inst.RootDeviceType != types.DeviceTypeEbs {
		return "", fmt.Errorf("%w: instance %s has an instance-store root device (%s); the plugin clones EBS-backed instances only (CreateImage), and an instance store does not survive the stop", sdk.ErrFailedPrecondition, req.InstanceID, aws.ToString(inst.RootDeviceName))
	}
	// Every volume of an instance made from the clone goes with it
	// (DeleteInstance deletes its disks), whatever the source's volumes
	// said: DeleteOnTermination is the one setting CreateImage may change.
	var mappings []types.BlockDeviceMapping
	for _, m := range inst.BlockDeviceMappings {
		if m.Ebs != nil {
			mappings = append(mappings, types.BlockDeviceMapping{DeviceName: m.DeviceName, Ebs: &types.EbsBlockDevice{DeleteOnTermination: aws.Bool(true)}})
		}
	}
	tags := []string{tagToken, req.IdempotencyToken, tagSourceInstance, req.InstanceID, tagSourceImage, aws.ToString(inst.ImageId)}
	out, err := p.ec2.CreateImage(ctx, &ec2.CreateImageInput{
		InstanceId:  aws.String(req.InstanceID),
		Name:        aws.String(name),
		Description: aws.String(fmt.Sprintf("triad: clone of %s (every EBS volume)", req.InstanceID)),
		// The instance is stopped: nothing to flush, no reason to reboot.
		NoReboot:            aws.Bool(true),
		BlockDeviceMappings: mappings,
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeImage, Tags: tagsOf(ec2Tag, req.Labels, tags...)},
			{ResourceType: types.ResourceTypeSnapshot, Tags: tagsOf(ec2Tag, req.Labels, append(tags, tagClone, name)...)},
		},
	})
	if awsCode(err) == "InvalidAMIName.Duplicate" {
		// A concurrent call with this token made it between our lookup and
		// our create, or a deregistered clone still holds the name.
		img, lerr := p.cloneNamed(ctx, name)
		if lerr != nil {
			return "", lerr
		}
		if img != nil {
			return aws.ToString(img.ImageId), nil
		}
		return "", fmt.Errorf("%w: AMI name %s (idempotency token %q) is still held by a deregistered image; retry in a few minutes: %v", sdk.ErrUnavailable, name, req.IdempotencyToken, mapError(err))
	}
	if err != nil {
		return "", fmt.Errorf("cloning instance %s: %w", req.InstanceID, mapError(err))
	}
	return aws.ToString(out.ImageId), nil
}

// waitClone waits until a clone is available.
func (p *Provider) waitClone(ctx context.Context, id string) error {
	w := ec2.NewImageAvailableWaiter(p.ec2, func(o *ec2.ImageAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
		standard := o.Retryable
		o.Retryable = func(ctx context.Context, in *ec2.DescribeImagesInput, out *ec2.DescribeImagesOutput, err error) (bool, error) {
			// EC2 is eventually consistent: right after CreateImage,
			// DescribeImages may not know the image yet.
			if awsCode(err) == "InvalidAMIID.NotFound" {
				return true, nil
			}
			return standard(ctx, in, out, err)
		}
	})
	err := w.Wait(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}, Owners: []string{"self"}}, p.cfg.WaitTimeout.Duration)
	if err == nil {
		return nil
	}
	// The waiter says only that it failed; the image says why.
	if img, derr := p.describeImage(ctx, id); derr == nil && failed(img.State) {
		return fmt.Errorf("%w: clone %s of instance %s is %s (%s); retrying with the same idempotency token deletes it and makes another", sdk.ErrUnavailable, id, tagMap(img.Tags)[tagSourceInstance], img.State, stateReason(img.StateReason))
	}
	return fmt.Errorf("waiting for clone %s to become available: %w", id, mapError(err))
}

// stateReason says why an instance or image is in its state; EC2's
// messages often start with the code.
func stateReason(r *types.StateReason) string {
	if r == nil || r.Code == nil && r.Message == nil {
		return "no state reason"
	}
	code, msg := aws.ToString(r.Code), aws.ToString(r.Message)
	switch {
	case code == "":
		return msg
	case strings.HasPrefix(msg, code):
		return msg
	}
	return code + ": " + msg
}

// deleteClone deregisters a clone and deletes its snapshots, which
// DeregisterImage leaves behind: those it maps and those tagged with its
// name (a pending image may not map them all yet). A snapshot left over
// after a failure shows up in ListDiskSnapshots, so a retried cleanup
// finds it.
func (p *Provider) deleteClone(ctx context.Context, img types.Image) error {
	id := aws.ToString(img.ImageId)
	_, err := p.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
	if err = mapError(err); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("deregistering clone %s: %w", id, err)
	}
	snaps := map[string]bool{}
	for _, m := range img.BlockDeviceMappings {
		if m.Ebs != nil && m.Ebs.SnapshotId != nil {
			snaps[*m.Ebs.SnapshotId] = true
		}
	}
	tagged, err := p.triadSnapshots(ctx, types.Filter{Name: aws.String("tag:" + tagClone), Values: []string{aws.ToString(img.Name)}})
	if err != nil {
		return fmt.Errorf("listing the snapshots of clone %s: %w", id, err)
	}
	for _, s := range tagged {
		snaps[aws.ToString(s.SnapshotId)] = true
	}
	var errs []error
	for _, s := range slices.Sorted(maps.Keys(snaps)) {
		_, err := p.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(s)})
		if err = mapError(err); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			errs = append(errs, fmt.Errorf("deleting snapshot %s of clone %s (deregistered; ListDiskSnapshots shows the snapshot until it is deleted): %w", s, id, err))
		}
	}
	return errors.Join(errs...)
}

// snapshotKeys returns the KMS keys that encrypt snapshots, sorted: best
// effort, for an error message.
func (p *Provider) snapshotKeys(ctx context.Context, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	out, err := p.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: ids})
	if err != nil {
		return nil
	}
	keys := map[string]bool{}
	for _, s := range out.Snapshots {
		if aws.ToBool(s.Encrypted) && s.KmsKeyId != nil {
			keys[*s.KmsKeyId] = true
		}
	}
	return slices.Sorted(maps.Keys(keys))
}
