package aws_test

import (
	"strings"
	"testing"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
)

// TestVolumeChecks drives the preflight's volume checks (checkVolumes)
// against the fake.
func TestVolumeChecks(t *testing.T) {
	type want struct {
		name   string // a prefix of the check's name
		ok     bool
		detail []string
	}
	cases := []struct {
		name     string
		setup    func(fake *awsfake.Server, root, data string)
		instance string // "" is the seed
		want     []want
	}{
		{
			"an EBS-backed instance passes one check per volume with its size, type and encryption",
			func(*awsfake.Server, string, string) {}, "",
			[]want{
				{"volume {data} at /dev/sdf", true, []string{"data volume", "20 GiB gp3", "unencrypted"}},
				{"volume {root} at /dev/xvda", true, []string{"root volume", "8 GiB gp3", "unencrypted"}},
			},
		},
		{
			"volumes encrypted with a customer managed key name it and the README's KMS statements",
			func(f *awsfake.Server, _, _ string) { f.EncryptSeedVolumes(testKey) }, "",
			[]want{
				{"volume {data} at /dev/sdf", true, []string{"encrypted with KMS key " + testKey}},
				{"volume {root} at /dev/xvda", true, []string{"encrypted with KMS key " + testKey}},
				{"KMS key " + testKey, true, []string{"{data}, {root}", "README's KMS statements", "kms:CreateGrant", "ec2.eu-west-1.amazonaws.com", "Client.InternalError"}},
			},
		},
		{
			"an instance-store root fails: a clone copies EBS volumes only",
			func(f *awsfake.Server, _, _ string) { f.SetRootDeviceType(f.Seed().Instance, "instance-store") }, "",
			[]want{
				{"root device /dev/xvda", false, []string{"instance-store root device", "EBS-backed"}},
				{"volume {data} at /dev/sdf", true, nil},
			},
		},
		{
			"a volume being detached fails: a clone would miss it",
			func(f *awsfake.Server, _, data string) { f.SetVolumeAttachment(data, "detaching") }, "",
			[]want{
				{"volume {data} at /dev/sdf", false, []string{"detaching, not attached", "attach it again"}},
				{"volume {root} at /dev/xvda", true, nil},
			},
		},
		{
			"an unknown instance is one failed check saying so",
			func(*awsfake.Server, string, string) {}, "i-0000000000000dead",
			[]want{{"volumes of i-0000000000000dead", false, []string{"not found"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t)
			p := newProvider(t, fakeConfig(fake))
			vols := volumesByDevice(t, inspector(t, fake), fake.Seed().Instance)
			root, data := vols["/dev/xvda"].id, vols["/dev/sdf"].id
			tc.setup(fake, root, data)
			id := tc.instance
			if id == "" {
				id = fake.Seed().Instance
			}
			fill := strings.NewReplacer("{root}", root, "{data}", data).Replace
			got := aws.CheckVolumes(p, t.Context(), id)
			if len(got) != len(tc.want) {
				t.Fatalf("checks = %+v, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				c := got[i]
				if !strings.HasPrefix(c.Name, fill(w.name)) || c.OK != w.ok {
					t.Errorf("check %d = %+v, want %q ok=%v", i, c, fill(w.name), w.ok)
				}
				for _, d := range w.detail {
					if !strings.Contains(c.Detail, fill(d)) {
						t.Errorf("check %q: detail %q does not say %q", c.Name, c.Detail, fill(d))
					}
				}
			}
		})
	}
}
