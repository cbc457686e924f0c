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

// triadSnapshots lists this account's snapshots that triad took, with
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

// CreateDiskSnapshot implements sdk.Provider: CreateSnapshot of the
// stopped instance's data volume, then wait until completed. CreateSnapshot
// takes no client token, so the token is a tag, looked up first: a retry
// after a lost reply finds the first snapshot. (Two concurrent calls with
// one token can still both create; triad never makes them.)
func (p *Provider) CreateDiskSnapshot(ctx context.Context, req sdk.CreateDiskSnapshotRequest) (sdk.DiskSnapshot, error) {
	if err := checkToken(req.IdempotencyToken); err != nil {
		return sdk.DiskSnapshot{}, err
	}
	found, err := p.triadSnapshots(ctx, types.Filter{Name: aws.String("tag:" + tagToken), Values: []string{req.IdempotencyToken}})
	if err != nil {
		return sdk.DiskSnapshot{}, err
	}
	found = slices.DeleteFunc(found, func(s types.Snapshot) bool { return s.State == types.SnapshotStateError })
	var id string
	if len(found) > 0 {
		id = aws.ToString(found[0].SnapshotId)
	} else {
		if id, err = p.snapshotDataVolume(ctx, req); err != nil {
			return sdk.DiskSnapshot{}, err
		}
	}
	w := ec2.NewSnapshotCompletedWaiter(p.ec2, func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.delays()
	})
	if err := w.Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}, p.cfg.WaitTimeout.Duration); err != nil {
		return sdk.DiskSnapshot{}, fmt.Errorf("waiting for snapshot %s to complete: %w", id, mapError(err))
	}
	return p.GetDiskSnapshot(ctx, id)
}

func (p *Provider) snapshotDataVolume(ctx context.Context, req sdk.CreateDiskSnapshotRequest) (string, error) {
	inst, err := p.describeInstance(ctx, req.InstanceID)
	if err != nil {
		return "", err
	}
	if inst.State.Name != types.InstanceStateNameStopped {
		return "", fmt.Errorf("%w: instance %s is %s; snapshot a stopped instance (its disk is consistent only then)", sdk.ErrFailedPrecondition, req.InstanceID, inst.State.Name)
	}
	view := p.instanceView(inst)
	if view.DiskID == "" {
		return "", fmt.Errorf("%w: instance %s has no EBS volume at %s (cloud.config.dataDevice)", sdk.ErrFailedPrecondition, req.InstanceID, p.cfg.DataDevice)
	}
	out, err := p.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId:    aws.String(view.DiskID),
		Description: aws.String(fmt.Sprintf("triad: data volume of %s", req.InstanceID)),
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeSnapshot,
			Tags:         tagsOf(ec2Tag, req.Labels, tagToken, req.IdempotencyToken, tagSourceInstance, req.InstanceID, tagSourceImage, view.Image),
		}},
	})
	if err != nil {
		return "", mapError(err)
	}
	return aws.ToString(out.SnapshotId), nil
}

// GetDiskSnapshot implements sdk.Provider.
func (p *Provider) GetDiskSnapshot(ctx context.Context, id string) (sdk.DiskSnapshot, error) {
	s, err := p.describeSnapshot(ctx, id)
	if err != nil {
		return sdk.DiskSnapshot{}, err
	}
	return snapshotView(s), nil
}

// ListDiskSnapshots implements sdk.Provider: the snapshots triad took
// carrying every label.
func (p *Provider) ListDiskSnapshots(ctx context.Context, labels map[string]string) ([]sdk.DiskSnapshot, error) {
	snaps, err := p.triadSnapshots(ctx, labelFilters(labels)...)
	if err != nil {
		return nil, err
	}
	out := make([]sdk.DiskSnapshot, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, snapshotView(s))
	}
	slices.SortFunc(out, func(a, b sdk.DiskSnapshot) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteDiskSnapshot implements sdk.Provider.
func (p *Provider) DeleteDiskSnapshot(ctx context.Context, id string) error {
	if !strings.HasPrefix(id, "snap-") {
		return nil
	}
	_, err := p.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	if err = mapError(err); errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}
