package aws_test

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

// Disk snapshots are clones of the whole instance (an AMI of every EBS
// volume). These tests drive the plugin against the fake and look at
// what it made through EC2's own API, with an SDK client of their own.

const testKey = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// inspector is an EC2 client on the fake, for the tests' own look at what
// the plugin made.
func inspector(t *testing.T, fake *awsfake.Server) *ec2.Client {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(t.Context(), awsconfig.WithRegion(region), awsconfig.WithCredentialsProvider(testCredentials))
	if err != nil {
		t.Fatal(err)
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = sdkaws.String(fake.URL()) })
}

// volume is what the tests check of an instance's volume.
type volume struct {
	id, snapshot, volumeType, kmsKey string
	size                             int32
	encrypted, deleteOnTermination   bool
}

// volumesByDevice returns an instance's volumes by device name.
func volumesByDevice(t *testing.T, c *ec2.Client, instanceID string) map[string]volume {
	t.Helper()
	out, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: sdkaws.String("attachment.instance-id"), Values: []string{instanceID}}}})
	if err != nil {
		t.Fatalf("DescribeVolumes of %s: %v", instanceID, err)
	}
	m := map[string]volume{}
	for _, v := range out.Volumes {
		for _, a := range v.Attachments {
			m[sdkaws.ToString(a.Device)] = volume{sdkaws.ToString(v.VolumeId), sdkaws.ToString(v.SnapshotId), string(v.VolumeType), sdkaws.ToString(v.KmsKeyId),
				sdkaws.ToInt32(v.Size), sdkaws.ToBool(v.Encrypted), sdkaws.ToBool(a.DeleteOnTermination)}
		}
	}
	return m
}

// image describes one of the account's AMIs.
func image(t *testing.T, c *ec2.Client, id string) types.Image {
	t.Helper()
	out, err := c.DescribeImages(t.Context(), &ec2.DescribeImagesInput{ImageIds: []string{id}, Owners: []string{"self"}})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("DescribeImages %s: %v, %+v", id, err, out)
	}
	return out.Images[0]
}

// cloneSnapshots returns the snapshot of each device of a clone.
func cloneSnapshots(t *testing.T, c *ec2.Client, amiID string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, b := range image(t, c, amiID).BlockDeviceMappings {
		m[sdkaws.ToString(b.DeviceName)] = sdkaws.ToString(b.Ebs.SnapshotId)
	}
	return m
}

// snapshotsOfAccount lists every snapshot of the account.
func snapshotsOfAccount(t *testing.T, c *ec2.Client) []types.Snapshot {
	t.Helper()
	var out []types.Snapshot
	pages := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Snapshots...)
	}
	return out
}

// cloneSeed stops the seed and clones it.
func cloneSeed(t *testing.T, p sdk.Provider, fake *awsfake.Server, token string) sdk.DiskSnapshot {
	t.Helper()
	if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
		t.Fatal(err)
	}
	snap, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: token, InstanceID: fake.Seed().Instance, Labels: map[string]string{"triad.dev/operation": "op-1"}})
	if err != nil {
		t.Fatalf("CreateDiskSnapshot: %v", err)
	}
	return snap
}

func TestACloneHasEveryVolumeOfTheSourceWithItsSize(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	c := inspector(t, fake)
	source := volumesByDevice(t, c, seed.Instance)
	snap := cloneSeed(t, p, fake, "op-1-disk")

	if !strings.HasPrefix(snap.ID, "ami-") || snap.State != sdk.DiskSnapshotReady || snap.SizeBytes != 28<<30 ||
		snap.SourceInstanceID != seed.Instance || snap.SourceImage != seed.Image || snap.Labels["triad.dev/operation"] != "op-1" {
		t.Errorf("disk snapshot = %+v, want a ready AMI of 28 GiB (8 root + 20 data) of the seed, labelled", snap)
	}
	img := image(t, c, snap.ID)
	if !regexp.MustCompile(`^triad-[0-9a-f]{32}$`).MatchString(sdkaws.ToString(img.Name)) {
		t.Errorf("AMI name %q, want triad-<32 hex>", sdkaws.ToString(img.Name))
	}
	imgTags := map[string]string{}
	for _, tag := range img.Tags {
		imgTags[sdkaws.ToString(tag.Key)] = sdkaws.ToString(tag.Value)
	}
	wantTags := map[string]string{"triad.dev/operation": "op-1", "triad-aws:idempotency-token": "op-1-disk", "triad-aws:source-instance": seed.Instance, "triad-aws:source-image": seed.Image}
	for k, v := range wantTags {
		if imgTags[k] != v {
			t.Errorf("AMI tag %s = %q, want %q", k, imgTags[k], v)
		}
	}
	// One snapshot per volume of the source, root and data, each of the
	// volume, its size, and tagged like the AMI.
	mapped := map[string]types.EbsBlockDevice{}
	for _, b := range img.BlockDeviceMappings {
		mapped[sdkaws.ToString(b.DeviceName)] = *b.Ebs
	}
	if len(mapped) != len(source) || len(source) != 2 {
		t.Fatalf("the clone maps %v; the source has %v", mapped, source)
	}
	for dev, v := range source {
		m, ok := mapped[dev]
		if !ok {
			t.Errorf("the clone has no %s", dev)
			continue
		}
		if sdkaws.ToInt32(m.VolumeSize) != v.size || !sdkaws.ToBool(m.DeleteOnTermination) {
			t.Errorf("clone's %s: %d GiB, deleteOnTermination %v; want the source's %d GiB, true", dev, sdkaws.ToInt32(m.VolumeSize), sdkaws.ToBool(m.DeleteOnTermination), v.size)
		}
		out, err := c.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{sdkaws.ToString(m.SnapshotId)}})
		if err != nil || len(out.Snapshots) != 1 {
			t.Fatalf("DescribeSnapshots: %v", err)
		}
		s := out.Snapshots[0]
		tags := map[string]string{}
		for _, tag := range s.Tags {
			tags[sdkaws.ToString(tag.Key)] = sdkaws.ToString(tag.Value)
		}
		if sdkaws.ToString(s.VolumeId) != v.id || s.State != types.SnapshotStateCompleted || tags["triad-aws:clone"] != sdkaws.ToString(img.Name) || tags["triad-aws:idempotency-token"] != "op-1-disk" || tags["triad.dev/operation"] != "op-1" {
			t.Errorf("snapshot of %s = %+v, tags %v", dev, s, tags)
		}
	}
}

func TestCreateDiskSnapshotRefusesWhatItCannotClone(t *testing.T) {
	cases := []struct {
		name  string
		setup func(*testing.T, *awsfake.Server, sdk.Provider)
		want  string
	}{
		{"a running instance is refused: its disks are consistent only once it is stopped", func(*testing.T, *awsfake.Server, sdk.Provider) {}, "is running"},
		{"an instance-store-backed instance is refused: CreateImage clones EBS-backed ones", func(t *testing.T, f *awsfake.Server, p sdk.Provider) {
			if _, err := p.StopInstance(t.Context(), f.Seed().Instance); err != nil {
				t.Fatal(err)
			}
			f.SetRootDeviceType(f.Seed().Instance, "instance-store")
		}, "instance-store root device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fakeConfig(fake))
			tc.setup(t, fake, p)
			_, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: "disk", InstanceID: fake.Seed().Instance})
			if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CreateDiskSnapshot: %v, want ErrFailedPrecondition saying %q", err, tc.want)
			}
			if n := len(params(fake, "CreateImage")); n != 0 {
				t.Errorf("%d CreateImage calls, want none", n)
			}
		})
	}
}

func TestInstancesFromAClone(t *testing.T) {
	const newImage = "ami-0fedcba9876543210"
	cases := []struct {
		name string
		// image is the request's ("source": the clone's source image).
		image string
		// wantAMI is the AMI the instance boots ("clone": the clone's),
		// wantImage what GetInstance reports ("source": the source image).
		wantAMI, wantImage string
		// fromClone are the devices restored from the clone's snapshots.
		fromClone []string
	}{
		{"with no image, an instance boots the clone and has every volume restored from its snapshots", "", "clone", "source", []string{"/dev/sdf", "/dev/xvda"}},
		{"with the source's image, an instance boots the clone too", "source", "clone", "source", []string{"/dev/sdf", "/dev/xvda"}},
		{"with another image (a rolling upgrade), an instance boots that image with the clone's data volume", newImage, newImage, newImage, []string{"/dev/sdf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fakeConfig(fake))
			c := inspector(t, fake)
			snap := cloneSeed(t, p, fake, "op-1-disk")
			snaps := cloneSnapshots(t, c, snap.ID)
			source := func(s string) string {
				if s == "source" {
					return fake.Seed().Image
				}
				return s
			}
			inst, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "op-1-vm", Name: "cp-1", Zone: "eu-west-1b", Image: source(tc.image), DiskSnapshotID: snap.ID})
			if err != nil {
				t.Fatalf("CreateInstance: %v", err)
			}
			wantAMI := tc.wantAMI
			if wantAMI == "clone" {
				wantAMI = snap.ID
			}
			if inst.State != sdk.InstanceRunning || inst.Image != source(tc.wantImage) || inst.DiskID == "" {
				t.Errorf("instance = %+v, want running, image %s, a data disk", inst, source(tc.wantImage))
			}
			out, err := c.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{inst.ID}})
			if err != nil {
				t.Fatal(err)
			}
			if got := sdkaws.ToString(out.Reservations[0].Instances[0].ImageId); got != wantAMI {
				t.Errorf("the instance boots %s, want %s", got, wantAMI)
			}
			vols := volumesByDevice(t, c, inst.ID)
			for _, dev := range []string{"/dev/xvda", "/dev/sdf"} {
				v, ok := vols[dev]
				restored := slices.Contains(tc.fromClone, dev)
				switch {
				case !ok:
					t.Errorf("the instance has no volume at %s: %v", dev, vols)
				case restored && v.snapshot != snaps[dev]:
					t.Errorf("%s comes from %q, want the clone's snapshot %s", dev, v.snapshot, snaps[dev])
				case !restored && v.snapshot == snaps[dev]:
					t.Errorf("%s comes from the clone; want the other image's own", dev)
				case !v.deleteOnTermination:
					t.Errorf("%s outlives the instance", dev)
				}
			}
			if want := map[string]int32{"/dev/sdf": 20, "/dev/xvda": 8}; vols["/dev/sdf"].size != want["/dev/sdf"] || vols["/dev/xvda"].size != want["/dev/xvda"] || vols["/dev/sdf"].volumeType != "gp3" {
				t.Errorf("volumes = %+v, want the clone's sizes and type", vols)
			}
			run := params(fake, "RunInstances")[0]
			if tc.wantAMI == "clone" && run["BlockDeviceMapping.1.DeviceName"] != "" {
				t.Errorf("booting the clone passes block device mappings: %v", run)
			}
			if tc.wantAMI != "clone" {
				wantParams(t, fake, "RunInstances", map[string]string{
					"ImageId": newImage, "BlockDeviceMapping.1.DeviceName": "/dev/sdf", "BlockDeviceMapping.1.Ebs.SnapshotId": snaps["/dev/sdf"],
					"BlockDeviceMapping.1.Ebs.VolumeSize": "20", "BlockDeviceMapping.1.Ebs.VolumeType": "gp3", "BlockDeviceMapping.1.Ebs.Iops": "3000",
					"BlockDeviceMapping.1.Ebs.Throughput": "125", "BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
				})
				if _, ok := run["BlockDeviceMapping.2.DeviceName"]; ok {
					t.Errorf("the root volume of the clone is mapped onto the other image: %v", run)
				}
			}
			// DeleteInstance deletes every disk.
			if err := p.DeleteInstance(t.Context(), inst.ID); err != nil {
				t.Fatal(err)
			}
			for dev, v := range vols {
				if _, err := c.DescribeVolumes(t.Context(), &ec2.DescribeVolumesInput{VolumeIds: []string{v.id}}); err == nil {
					t.Errorf("volume %s at %s survived DeleteInstance", v.id, dev)
				}
			}
		})
	}
}

func TestAnotherImageIsRefusedForACloneWithARootVolumeOnly(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fakeConfig(fake))
	data := volumesByDevice(t, inspector(t, fake), fake.Seed().Instance)["/dev/sdf"].id
	fake.SetVolumeAttachment(data, "detached")
	snap := cloneSeed(t, p, fake, "op-1-disk")
	if snap.SizeBytes != 8<<30 {
		t.Fatalf("clone of the root alone = %+v", snap)
	}
	_, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "vm", Name: "vm", Zone: "eu-west-1a", Image: "ami-0fedcba9876543210", DiskSnapshotID: snap.ID})
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "no volume besides the root") {
		t.Errorf("another image with a root-only clone: %v, want ErrFailedPrecondition", err)
	}
	if len(params(fake, "RunInstances")) != 0 {
		t.Error("the plugin launched an instance that would have none of the source's state")
	}
	if _, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "vm2", Name: "vm", Zone: "eu-west-1a", DiskSnapshotID: snap.ID}); err != nil {
		t.Errorf("the clone itself boots: %v", err)
	}
}

func TestARetriedCloneIsTheFirstOne(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	first := cloneSeed(t, p, fake, "op-1-disk")
	again := cloneSeed(t, p, fake, "op-1-disk")
	if again.ID != first.ID {
		t.Fatalf("retried CreateDiskSnapshot made %s, first %s", again.ID, first.ID)
	}
	if n := len(params(fake, "CreateImage")); n != 1 {
		t.Errorf("%d CreateImage calls, want 1", n)
	}

	// Concurrent calls with one token (triad makes none): AMI names are
	// unique, so they all get one clone.
	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			s, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: "concurrent", InstanceID: seed.Instance})
			if err != nil {
				t.Errorf("concurrent CreateDiskSnapshot: %v", err)
			}
			ids[i] = s.ID
		})
	}
	wg.Wait()
	if ids[0] == "" || slices.ContainsFunc(ids, func(id string) bool { return id != ids[0] }) {
		t.Errorf("concurrent calls with one token got %v", ids)
	}
	out, err := inspector(t, fake).DescribeImages(t.Context(), &ec2.DescribeImagesInput{Owners: []string{"self"}})
	if err != nil || len(out.Images) != 2 {
		t.Errorf("the account has %d AMIs, want 2 (one per token): %v", len(out.Images), err)
	}

	// The token names what it made: another instance under it is refused.
	other, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "vm", Name: "vm", Zone: "eu-west-1a", DiskSnapshotID: first.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.StopInstance(t.Context(), other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: "op-1-disk", InstanceID: other.ID}); !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Errorf("the token of a clone of the seed, for another instance: %v, want ErrAlreadyExists", err)
	}
}

func TestAFailedCloneIsReplacedByARetry(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fakeConfig(fake))
	c := inspector(t, fake)
	if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
		t.Fatal(err)
	}
	fake.FailImages(1)
	req := sdk.CreateDiskSnapshotRequest{IdempotencyToken: "op-1-disk", InstanceID: fake.Seed().Instance}
	_, err := p.CreateDiskSnapshot(t.Context(), req)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "Server.InternalError") {
		t.Fatalf("a clone that fails: %v, want ErrUnavailable naming the state and its reason", err)
	}
	failedID := regexp.MustCompile(`ami-[0-9a-f]+`).FindString(err.Error())
	snaps := cloneSnapshots(t, c, failedID)
	retry, err := p.CreateDiskSnapshot(t.Context(), req)
	if err != nil || retry.State != sdk.DiskSnapshotReady || retry.ID == failedID {
		t.Fatalf("the retry: %+v, %v; want a new ready clone", retry, err)
	}
	if out, err := c.DescribeImages(t.Context(), &ec2.DescribeImagesInput{ImageIds: []string{failedID}}); err != nil || len(out.Images) != 0 {
		t.Errorf("the failed clone %s is still registered: %v", failedID, err)
	}
	for dev, s := range snaps {
		if _, err := c.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{s}}); err == nil {
			t.Errorf("snapshot %s of the failed clone's %s is left", s, dev)
		}
	}
}

func TestDeletingACloneDeletesItsSnapshots(t *testing.T) {
	labels := map[string]string{"triad.dev/operation": "op-1"}
	cases := []struct {
		name string
		// failSnapshotDeletes makes the first DeleteSnapshot fail, as a
		// crash in the middle of DeleteDiskSnapshot would leave things.
		failSnapshotDeletes bool
	}{
		{"a deleted clone leaves no AMI and no snapshot, and deleting it again succeeds", false},
		{"a deletion that stopped half way leaves snapshots that ListDiskSnapshots shows, and deleting them finishes it", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fakeConfig(fake))
			c := inspector(t, fake)
			snap := cloneSeed(t, p, fake, "op-1-disk")
			if list, err := p.ListDiskSnapshots(t.Context(), labels); err != nil || len(list) != 1 || list[0].ID != snap.ID {
				t.Fatalf("ListDiskSnapshots before the delete = %+v, %v; want the clone alone (its snapshots are part of it)", list, err)
			}
			if tc.failSnapshotDeletes {
				fake.Fail("DeleteSnapshot", "UnauthorizedOperation", 1)
				if err := p.DeleteDiskSnapshot(t.Context(), snap.ID); !errors.Is(err, sdk.ErrPermissionDenied) {
					t.Fatalf("DeleteDiskSnapshot with DeleteSnapshot refused: %v", err)
				}
				list, err := p.ListDiskSnapshots(t.Context(), labels)
				if err != nil || len(list) != 1 || !strings.HasPrefix(list[0].ID, "snap-") || list[0].Labels["triad.dev/operation"] != "op-1" {
					t.Fatalf("ListDiskSnapshots after the half deletion = %+v, %v; want the snapshot left over, labelled", list, err)
				}
				// What triad's cleanup does: delete what it lists.
				if err := p.DeleteDiskSnapshot(t.Context(), list[0].ID); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				if err := p.DeleteDiskSnapshot(t.Context(), snap.ID); err != nil {
					t.Fatalf("DeleteDiskSnapshot: %v", err)
				}
			}
			if out, err := c.DescribeImages(t.Context(), &ec2.DescribeImagesInput{Owners: []string{"self"}}); err != nil || len(out.Images) != 0 {
				t.Errorf("AMIs left: %+v, %v", out, err)
			}
			if left := snapshotsOfAccount(t, c); len(left) != 0 {
				t.Errorf("snapshots left: %+v", left)
			}
			if _, err := p.GetDiskSnapshot(t.Context(), snap.ID); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("GetDiskSnapshot after the delete: %v, want ErrNotFound", err)
			}
			if list, err := p.ListDiskSnapshots(t.Context(), labels); err != nil || len(list) != 0 {
				t.Errorf("ListDiskSnapshots after the delete = %+v, %v", list, err)
			}
		})
	}
}

func TestAnAMITriadDidNotMakeIsNeitherADiskSnapshotNorDeleted(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fakeConfig(fake))
	c := inspector(t, fake)
	if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
		t.Fatal(err)
	}
	out, err := c.CreateImage(t.Context(), &ec2.CreateImageInput{InstanceId: sdkaws.String(fake.Seed().Instance), Name: sdkaws.String("golden")})
	if err != nil {
		t.Fatal(err)
	}
	golden := sdkaws.ToString(out.ImageId)
	if _, err := p.GetDiskSnapshot(t.Context(), golden); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("GetDiskSnapshot of an operator's AMI: %v, want ErrNotFound", err)
	}
	if err := p.DeleteDiskSnapshot(t.Context(), golden); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("DeleteDiskSnapshot of an operator's AMI: %v, want ErrFailedPrecondition", err)
	}
	if len(params(fake, "DeregisterImage")) != 0 {
		t.Error("the plugin deregistered an AMI it did not make")
	}
}

func TestAnEarlierReleasesDataSnapshotStillWorks(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	if _, err := p.StopInstance(t.Context(), seed.Instance); err != nil {
		t.Fatal(err)
	}
	legacy := fake.LegacySnapshot(seed.Instance, "/dev/sdf", map[string]string{
		"triad-aws:idempotency-token": "op-0-disk", "triad-aws:source-instance": seed.Instance, "triad-aws:source-image": seed.Image, "triad.dev/operation": "op-0",
	})
	snap, err := p.GetDiskSnapshot(t.Context(), legacy)
	if err != nil || snap.State != sdk.DiskSnapshotReady || snap.SizeBytes != 20<<30 || snap.SourceInstanceID != seed.Instance {
		t.Fatalf("GetDiskSnapshot of a data snapshot = %+v, %v", snap, err)
	}
	if list, err := p.ListDiskSnapshots(t.Context(), map[string]string{"triad.dev/operation": "op-0"}); err != nil || len(list) != 1 || list[0].ID != legacy {
		t.Errorf("ListDiskSnapshots = %+v, %v", list, err)
	}
	inst, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "op-0-vm", Name: "cp-1", Zone: "eu-west-1a", DiskSnapshotID: legacy})
	if err != nil || inst.Image != seed.Image || inst.DiskID == "" {
		t.Fatalf("CreateInstance from a data snapshot = %+v, %v", inst, err)
	}
	wantParams(t, fake, "RunInstances", map[string]string{"ImageId": seed.Image, "BlockDeviceMapping.1.DeviceName": "/dev/sdf", "BlockDeviceMapping.1.Ebs.SnapshotId": legacy, "BlockDeviceMapping.1.Ebs.VolumeType": "gp3"})
	for range 2 {
		if err := p.DeleteDiskSnapshot(t.Context(), legacy); err != nil {
			t.Fatalf("DeleteDiskSnapshot of a data snapshot: %v", err)
		}
	}
	if _, err := p.GetDiskSnapshot(t.Context(), legacy); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("GetDiskSnapshot after the delete: %v", err)
	}
}

// statement is one statement of the README's IAM policy.
type statement struct {
	Sid       string
	Action    []string
	Resource  any
	Condition map[string]map[string]any
}

func readmePolicy(t *testing.T) []statement {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```json\n(\\{.*?\"Statement\".*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no IAM policy in a json block")
	}
	var policy struct{ Statement []statement }
	if err := json.Unmarshal(m[1], &policy); err != nil {
		t.Fatalf("README policy: %v", err)
	}
	return policy.Statement
}

// readmeActions returns the actions the README's policy grants, less
// those drop says to leave out.
func readmeActions(t *testing.T, drop func(string) bool) []string {
	var out []string
	for _, s := range readmePolicy(t) {
		for _, a := range s.Action {
			if !drop(a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func TestTheREADMEKMSStatementsGrantWhatTheVolumesNeedOnTheKeysOnly(t *testing.T) {
	var granted []string
	for _, s := range readmePolicy(t) {
		kms := slices.ContainsFunc(s.Action, func(a string) bool { return strings.HasPrefix(a, "kms:") })
		if !kms {
			continue
		}
		granted = append(granted, s.Action...)
		if s.Sid != "TriadUsesTheVolumesKMSKeys" && s.Sid != "TriadLetsEC2GrantOnTheVolumesKMSKeys" {
			t.Errorf("KMS statement %q: the plugin's errors name TriadUsesTheVolumesKMSKeys and TriadLetsEC2GrantOnTheVolumesKMSKeys", s.Sid)
		}
		if res, _ := json.Marshal(s.Resource); !strings.Contains(string(res), `"arn:aws:kms:`) || strings.Contains(string(res), `"*"`) {
			t.Errorf("statement %s applies to %s, want the keys' ARNs", s.Sid, res)
		}
		if s.Condition["StringEquals"]["kms:ViaService"] != "ec2."+region+".amazonaws.com" {
			t.Errorf("statement %s is not limited to EC2 in %s: %v", s.Sid, region, s.Condition)
		}
		if slices.Contains(s.Action, "kms:CreateGrant") && s.Condition["Bool"]["kms:GrantIsForAWSResource"] != "true" {
			t.Errorf("statement %s grants kms:CreateGrant for any grantee: %v", s.Sid, s.Condition)
		}
	}
	slices.Sort(granted)
	for name, want := range map[string][]string{"the plugin's errors": aws.KMSVolumeActions, "the fake": awsfake.KMSVolumeActions()} {
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(granted, want) {
			t.Errorf("the README's KMS statements grant %v; %s name %v", granted, name, want)
		}
	}
}

func TestAKMSEncryptedClone(t *testing.T) {
	withoutKMS := func(a string) bool { return strings.HasPrefix(a, "kms:") }
	cases := []struct {
		name string
		// drop removes actions from the README's policy.
		drop func(string) bool
		// plugin runs the provider through the plugin binary.
		plugin bool
		// wantErr is what CreateInstance fails with, nil: it runs.
		wantErr error
	}{
		{"under the README's policy keeps the key on every volume and launches", func(string) bool { return false }, false, nil},
		{"without the README's KMS statements fails the launch at once, naming the key", withoutKMS, false, sdk.ErrPermissionDenied},
		{"without the README's KMS statements fails the launch through the plugin binary too", withoutKMS, true, sdk.ErrPermissionDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			fake.EncryptSeedVolumes(testKey)
			var p sdk.Provider = newProvider(t, fakeConfig(fake))
			if tc.plugin {
				p = openPlugin(t, fakeConfig(fake))
			}
			c := inspector(t, fake)
			fake.SetPolicy(readmeActions(t, tc.drop))
			snap := cloneSeed(t, p, fake, "op-1-disk")
			for dev, id := range cloneSnapshots(t, c, snap.ID) {
				out, err := c.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
				if err != nil || !sdkaws.ToBool(out.Snapshots[0].Encrypted) || sdkaws.ToString(out.Snapshots[0].KmsKeyId) != testKey {
					t.Errorf("the clone's snapshot of %s: %+v, %v; want encrypted with %s", dev, out, err, testKey)
				}
			}
			for _, image := range []string{"", "ami-0fedcba9876543210"} {
				start := time.Now()
				inst, err := p.CreateInstance(t.Context(), sdk.CreateInstanceRequest{IdempotencyToken: "op-1-vm" + image, Name: "cp-1", Zone: "eu-west-1b", Image: image, DiskSnapshotID: snap.ID})
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("CreateInstance took %s (waitTimeout is 30s): it waited for a terminated instance", took)
				}
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("CreateInstance on image %q: %v, want %v", image, err, tc.wantErr)
					}
					for _, want := range []string{"terminated", "Client.InternalError", testKey, "kms:CreateGrant", "kms:Decrypt", "TriadUsesTheVolumesKMSKeys", "README"} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("the error does not say %q: %v", want, err)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("CreateInstance on image %q: %v", image, err)
				}
				vols := volumesByDevice(t, c, inst.ID)
				if len(vols) != 2 {
					t.Errorf("volumes %v", vols)
				}
				for dev, v := range vols {
					// The other image's own root is not the clone's.
					if image != "" && dev == "/dev/xvda" {
						continue
					}
					if !v.encrypted || v.kmsKey != testKey {
						t.Errorf("%s of the instance on image %q: encrypted %v with %q, want %s", dev, image, v.encrypted, v.kmsKey, testKey)
					}
				}
			}
			// The original restarts under the same policy (rollback).
			if _, err := p.StartInstance(t.Context(), fake.Seed().Instance); !errors.Is(err, tc.wantErr) {
				t.Errorf("StartInstance of the encrypted seed: %v, want %v", err, tc.wantErr)
			} else if err != nil && !strings.Contains(err.Error(), testKey) {
				t.Errorf("the start's error does not name the key: %v", err)
			}
		})
	}
}

func TestTheFakesIAMModelRefusesWhatThePolicyLacks(t *testing.T) {
	cases := []struct {
		name    string
		lacks   string
		call    func(*testing.T, sdk.Provider, awsfake.Seed) error
		wantErr string
	}{
		{"an EC2 call the policy lacks is UnauthorizedOperation", "ec2:CreateImage", func(t *testing.T, p sdk.Provider, s awsfake.Seed) error {
			_, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: "disk", InstanceID: s.Instance})
			return err
		}, "lack ec2:CreateImage"},
		{"tagging on creation without ec2:CreateTags is UnauthorizedOperation", "ec2:CreateTags", func(t *testing.T, p sdk.Provider, s awsfake.Seed) error {
			_, err := p.CreateDiskSnapshot(t.Context(), sdk.CreateDiskSnapshotRequest{IdempotencyToken: "disk", InstanceID: s.Instance})
			return err
		}, "UnauthorizedOperation"},
		{"an ELB call the policy lacks is AccessDenied", "elasticloadbalancing:DescribeLoadBalancers", func(t *testing.T, p sdk.Provider, _ awsfake.Seed) error {
			_, err := p.ListLoadBalancers(t.Context(), nil)
			return err
		}, "AccessDenied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fakeConfig(fake))
			if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
				t.Fatal(err)
			}
			fake.SetPolicy(readmeActions(t, func(a string) bool { return a == tc.lacks }))
			if err := tc.call(t, p, fake.Seed()); !errors.Is(err, sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("without %s: %v, want ErrPermissionDenied saying %q", tc.lacks, err, tc.wantErr)
			}
			fake.SetPolicy(nil)
			if err := tc.call(t, p, fake.Seed()); err != nil {
				t.Errorf("with every action allowed again: %v", err)
			}
		})
	}
}
