package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Preflight of the disks a disk snapshot (a clone of the whole instance,
// images.go) copies: which EBS volumes, how big, encrypted with which KMS
// key, and what stops a clone.

// volumesOf describes an instance's EBS volumes, by volume id.
func (p *Provider) volumesOf(ctx context.Context, i types.Instance) (map[string]types.Volume, error) {
	var ids []string
	for _, m := range i.BlockDeviceMappings {
		if m.Ebs != nil && m.Ebs.VolumeId != nil {
			ids = append(ids, *m.Ebs.VolumeId)
		}
	}
	out := map[string]types.Volume{}
	if len(ids) == 0 {
		return out, nil
	}
	pages := ec2.NewDescribeVolumesPaginator(p.ec2, &ec2.DescribeVolumesInput{VolumeIds: ids})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		for _, v := range page.Volumes {
			out[aws.ToString(v.VolumeId)] = v
		}
	}
	return out, nil
}

// volumeKeys returns the KMS keys of the encrypted volumes, sorted.
func volumeKeys(vols map[string]types.Volume) []string {
	keys := map[string]bool{}
	for _, v := range vols {
		if aws.ToBool(v.Encrypted) && v.KmsKeyId != nil {
			keys[*v.KmsKeyId] = true
		}
	}
	return slices.Sorted(maps.Keys(keys))
}

// checkVolumes reports, changing nothing, the EBS volumes of the instance
// a disk snapshot would copy: one check per volume (size, type,
// encryption), a failed one for an instance-store root (CreateImage clones
// EBS-backed instances only) or a volume that is not attached (a clone
// would miss it or fail), and, per KMS key the volumes are encrypted with,
// what the plugin's role needs for new instances to launch with copies of
// them.
func (p *Provider) checkVolumes(ctx context.Context, instanceID string) []sdk.Check {
	i, err := p.describeInstance(ctx, instanceID)
	if err != nil {
		return []sdk.Check{{Name: "volumes of " + instanceID, Detail: fmt.Sprintf("describing the instance: %v", err)}}
	}
	var checks []sdk.Check
	root := aws.ToString(i.RootDeviceName)
	if i.RootDeviceType != types.DeviceTypeEbs {
		checks = append(checks, sdk.Check{Name: "root device " + root + " of " + instanceID,
			Detail: fmt.Sprintf("an %s root device: the plugin clones EBS-backed instances only (CreateImage), and an instance store loses its data when the instance stops; move the node to an EBS-backed AMI first", i.RootDeviceType)})
	}
	vols, err := p.volumesOf(ctx, i)
	if err != nil {
		return append(checks, sdk.Check{Name: "volumes of " + instanceID, Detail: fmt.Sprintf("describing the volumes: %v", err)})
	}
	byKey := map[string][]string{}
	for _, m := range i.BlockDeviceMappings {
		if m.Ebs == nil || m.Ebs.VolumeId == nil {
			continue
		}
		dev, id := aws.ToString(m.DeviceName), *m.Ebs.VolumeId
		c := sdk.Check{Name: fmt.Sprintf("volume %s at %s", id, dev)}
		v, ok := vols[id]
		if !ok {
			c.Detail = fmt.Sprintf("EC2 does not describe volume %s that %s maps at %s", id, instanceID, dev)
			checks = append(checks, c)
			continue
		}
		state := types.VolumeAttachmentStateDetached
		for _, a := range v.Attachments {
			if aws.ToString(a.InstanceId) == instanceID {
				state = a.State
			}
		}
		enc := "unencrypted"
		if aws.ToBool(v.Encrypted) {
			enc = "encrypted with KMS key " + aws.ToString(v.KmsKeyId)
			byKey[aws.ToString(v.KmsKeyId)] = append(byKey[aws.ToString(v.KmsKeyId)], id)
		}
		what := "data"
		if dev == root {
			what = "root"
		}
		c.Detail = fmt.Sprintf("%s volume, %d GiB %s, %s", what, aws.ToInt32(v.Size), v.VolumeType, enc)
		if state == types.VolumeAttachmentStateAttached {
			c.OK = true
			c.Detail += "; the disk snapshot copies it"
		} else {
			c.Detail += fmt.Sprintf("; it is %s, not attached: a disk snapshot (CreateImage) copies attached volumes only; attach it again, or detach it for good, before migrating", state)
		}
		checks = append(checks, c)
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		checks = append(checks, sdk.Check{
			Name: "KMS key " + key + " of the volumes", OK: true,
			Detail: fmt.Sprintf("%s encrypted with %s; the new instances' copies keep that key, so the plugin's role needs the README's KMS statements (%s through ec2.%s.amazonaws.com) on it, and the key policy must let the account's IAM policies allow them (the default key policy does), "+
				"or EC2 terminates the new instances at launch (Client.InternalError); nothing to do for the AWS managed key aws/ebs",
				strings.Join(byKey[key], ", "), key, strings.Join(kmsVolumeActions, ", "), p.ec2.Options().Region),
		})
	}
	return checks
}
