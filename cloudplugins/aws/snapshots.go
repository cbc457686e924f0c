package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Disk snapshots. A disk snapshot is a clone of the whole stopped
// instance, an AMI (id ami-…, images.go). Earlier releases snapshotted
// the data volume only (an EBS snapshot, id snap-…); GetDiskSnapshot,
// ListDiskSnapshots, DeleteDiskSnapshot and CreateInstance still take
// those, so that operations journaled before an upgrade of the plugin
// finish.

var snapshotStates = map[types.SnapshotState]sdk.DiskSnapshotState{
	types.SnapshotStatePending:     sdk.DiskSnapshotPending,
	types.SnapshotStateCompleted:   sdk.DiskSnapshotReady,
	types.SnapshotStateError:       sdk.DiskSnapshotError,
	types.SnapshotStateRecoverable: sdk.DiskSnapshotPending,
	types.SnapshotStateRecovering:  sdk.DiskSnapshotPending,
}

func snapshotView(s types.Snapshot) sdk.DiskSnapshot {
	tags := tagMap(s.Tags)
	return sdk.DiskSnapshot{
		ID:               aws.ToString(s.SnapshotId),
		SourceInstanceID: tags[tagSourceInstance],
		SourceImage:      tags[tagSourceImage],
		State:            snapshotStates[s.State],
		SizeBytes:        int64(aws.ToInt32(s.VolumeSize)) << 30,
		Labels:           labelsOf(tags),
		CreatedAt:        aws.ToTime(s.StartTime),
	}
}

func (p *Provider) describeSnapshot(ctx context.Context, id string) (types.Snapshot, error) {
	if !strings.HasPrefix(id, "snap-") {
		return types.Snapshot{}, fmt.Errorf("%w: disk snapshot %q", sdk.ErrNotFound, id)
	}
	out, err := p.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
	if err != nil {
		return types.Snapshot{}, mapError(err)
	}
	if len(out.Snapshots) != 1 {
		return types.Snapshot{}, fmt.Errorf("%w: disk snapshot %s", sdk.ErrNotFound, id)
	}
	return out.Snapshots[0], nil
}

// triadSnapshots lists this account's EBS snapshots that triad took
// (earlier releases' disk snapshots and the clones' snapshots), with
// extra filters.
func (p *Provider) triadSnapshots(ctx context.Context, filters ...types.Filter) ([]types.Snapshot, error) {
	in := &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"},
		Filters:  append([]types.Filter{{Name: aws.String("tag-key"), Values: []string{tagSourceInstance}}}, filters...),
	}
	var out []types.Snapshot
	pages := ec2.NewDescribeSnapshotsPaginator(p.ec2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		out = append(out, page.Snapshots...)
	}
	return out, nil
}

// CreateDiskSnapshot implements sdk.Provider: an AMI of the stopped
// instance with every EBS volume (CreateImage), named after the token
// (cloneName) and looked up by name first, so that a retry after a lost
// reply finds the first one; then wait until it is available. A clone
// that failed is deleted and made again.
func (p *Provider) CreateDiskSnapshot(ctx context.Context, req sdk.CreateDiskSnapshotRequest) (sdk.DiskSnapshot, error) {
	if err := checkToken(req.IdempotencyToken); err != nil {
		return sdk.DiskSnapshot{}, err
	}
	name := cloneName(req.IdempotencyToken)
	img, err := p.cloneNamed(ctx, name)
	if err != nil {
		return sdk.DiskSnapshot{}, err
	}
	if img != nil && failed(img.State) {
		if err := p.deleteClone(ctx, *img); err != nil {
			return sdk.DiskSnapshot{}, fmt.Errorf("replacing failed clone %s: %w", aws.ToString(img.ImageId), err)
		}
		img = nil
	}
	var id string
	if img != nil {
		if src := tagMap(img.Tags)[tagSourceInstance]; src != req.InstanceID {
			return sdk.DiskSnapshot{}, fmt.Errorf("%w: idempotency token %q already made disk snapshot %s, of instance %s, not %s", sdk.ErrAlreadyExists, req.IdempotencyToken, aws.ToString(img.ImageId), src, req.InstanceID)
		}
		id = aws.ToString(img.ImageId)
	} else if id, err = p.createClone(ctx, req, name); err != nil {
		return sdk.DiskSnapshot{}, err
	}
	if err := p.waitClone(ctx, id); err != nil {
		return sdk.DiskSnapshot{}, err
	}
	return p.GetDiskSnapshot(ctx, id)
}

// GetDiskSnapshot implements sdk.Provider.
func (p *Provider) GetDiskSnapshot(ctx context.Context, id string) (sdk.DiskSnapshot, error) {
	if strings.HasPrefix(id, "ami-") {
		img, err := p.describeClone(ctx, id)
		if err != nil {
			return sdk.DiskSnapshot{}, err
		}
		return imageView(img), nil
	}
	s, err := p.describeSnapshot(ctx, id)
	if err != nil {
		return sdk.DiskSnapshot{}, err
	}
	return snapshotView(s), nil
}

// ListDiskSnapshots implements sdk.Provider: the clones triad made
// carrying every label, and the EBS snapshots triad took that belong to
// no clone (earlier releases' disk snapshots, and the snapshots of a
// clone whose deletion stopped half way) so that a cleanup by label finds
// them.
func (p *Provider) ListDiskSnapshots(ctx context.Context, labels map[string]string) ([]sdk.DiskSnapshot, error) {
	// Snapshots first: a snapshot listed here belongs to a clone that the
	// next call lists, unless the clone is gone.
	snaps, err := p.triadSnapshots(ctx, labelFilters(labels)...)
	if err != nil {
		return nil, err
	}
	clones, err := p.images(ctx, append([]types.Filter{{Name: aws.String("tag-key"), Values: []string{tagSourceInstance}}}, labelFilters(labels)...)...)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	out := make([]sdk.DiskSnapshot, 0, len(clones)+len(snaps))
	for _, img := range clones {
		live[aws.ToString(img.Name)] = true
		out = append(out, imageView(img))
	}
	var unknown []string
	for _, s := range snaps {
		if c := tagMap(s.Tags)[tagClone]; c != "" && !live[c] && !slices.Contains(unknown, c) {
			unknown = append(unknown, c)
		}
	}
	if len(unknown) > 0 {
		// Clones whose labels changed since: still there, still theirs.
		more, err := p.images(ctx, types.Filter{Name: aws.String("name"), Values: unknown})
		if err != nil {
			return nil, err
		}
		for _, img := range more {
			live[aws.ToString(img.Name)] = true
		}
	}
	for _, s := range snaps {
		if c := tagMap(s.Tags)[tagClone]; c == "" || !live[c] {
			out = append(out, snapshotView(s))
		}
	}
	slices.SortFunc(out, func(a, b sdk.DiskSnapshot) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteDiskSnapshot implements sdk.Provider: a clone is deregistered and
// its snapshots deleted; an AMI triad did not make is refused.
func (p *Provider) DeleteDiskSnapshot(ctx context.Context, id string) error {
	switch {
	case strings.HasPrefix(id, "ami-"):
		img, err := p.describeImage(ctx, id)
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if !isClone(img) {
			return fmt.Errorf("%w: AMI %s is not a disk snapshot triad made (no %s tag); the plugin does not deregister it", sdk.ErrFailedPrecondition, id, tagSourceInstance)
		}
		return p.deleteClone(ctx, img)
	case strings.HasPrefix(id, "snap-"):
		_, err := p.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		if err = mapError(err); errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}
