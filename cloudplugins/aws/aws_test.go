package aws_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"sigs.k8s.io/yaml"

	"github.com/triad-k8s/triad/cloudplugins/aws"
	"github.com/triad-k8s/triad/cloudplugins/aws/internal/awsfake"
	"github.com/triad-k8s/triad/cloudplugins/conformance"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
)

const region = "eu-west-1"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "triad-cloud-aws-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "triad-cloud-aws")
	cmd := exec.Command("go", "build", "-o", binary, "../../cmd/triad-cloud-aws")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building triad-cloud-aws:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fakeConfig is the plugin configuration that points at fake, with waits
// and backoff short enough for tests.
func fakeConfig(fake *awsfake.Server) aws.Config {
	seed := fake.Seed()
	return aws.Config{
		Region:           seed.Region,
		VPCID:            seed.VPCID,
		Subnets:          seed.Subnets,
		PrivateAddresses: []string{seed.PrivateAddress},
		Endpoints:        map[string]string{"ec2": fake.URL(), "elasticloadbalancing": fake.URL()},
		MaxBackoff:       aws.Duration{Duration: 20 * time.Millisecond},
		PollInterval:     aws.Duration{Duration: 5 * time.Millisecond},
		WaitTimeout:      aws.Duration{Duration: 30 * time.Second},
	}
}

// newFake starts a fake whose every request must have the reference's
// shape: the test fails on any the fake refused for its shape.
func newFake(t *testing.T) *awsfake.Server {
	fake := awsfake.New(region)
	t.Cleanup(func() {
		for _, r := range fake.Requests() {
			if r.Problem != "" {
				t.Errorf("%s:%s refused for its shape: %s (params %v)", r.Service, r.Action, r.Problem, r.Params)
			}
		}
		fake.Close()
	})
	return fake
}

var testCredentials = credentials.NewStaticCredentialsProvider("AKIDTRIADTEST", "secret", "")

func newProvider(t *testing.T, cfg aws.Config) *aws.Provider {
	t.Helper()
	p, err := aws.New(t.Context(), cfg, awsconfig.WithCredentialsProvider(testCredentials))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const noBackends = "the fake has no data plane: its load balancers carry no traffic and probe nothing, so health checks and traffic through an NLB are unverified (README: checked only against the fake)"

func fixture(fake *awsfake.Server, p sdk.Provider) conformance.Fixture {
	seed := fake.Seed()
	return conformance.Fixture{Provider: p, Seed: seed.Instance, PrivateAddressID: seed.PrivateAddress, PublicAddressID: seed.PublicAddress, NoBackends: noBackends}
}

func TestConformanceInProcess(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Fixture {
		fake := newFake(t)
		return fixture(fake, newProvider(t, fakeConfig(fake)))
	})
}

// openPlugin starts triad-cloud-aws through go-plugin, configured as
// triad would: cloud.config as JSON, credentials from cloud.env.
func openPlugin(t *testing.T, cfg aws.Config) *sdk.Plugin {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"AWS_ACCESS_KEY_ID=AKIDTRIADTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true"}
	plugin, err := sdk.Open(t.Context(), binary, sdk.OpenOptions{Config: raw, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plugin.Close)
	return plugin
}

func TestConformanceThroughThePluginBinary(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.Fixture {
		fake := newFake(t)
		plugin := openPlugin(t, fakeConfig(fake))
		if plugin.Info.Name != "aws" || !slices.Equal(plugin.Info.Zones, []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}) {
			t.Fatalf("plugin info %+v", plugin.Info)
		}
		return fixture(fake, plugin)
	})
}

func TestBadConfigurationIsRefusedWithEveryProblem(t *testing.T) {
	_, err := aws.ParseConfig([]byte(`{"vpcId": "vpc-1", "subnets": {"eu-west-1a": "sn-1"}, "privateAddresses": ["10.0.1"], "dataDevice": "sdf", "endpoints": {"s3": "x"}}`))
	for _, want := range []string{"subnets.eu-west-1a", "privateAddresses", "dataDevice", "endpoints.s3"} {
		if err == nil || !strings.Contains(err.Error(), "cloud.config."+want) {
			t.Errorf("error %v does not name cloud.config.%s", err, want)
		}
	}
	if _, err := aws.ParseConfig([]byte(`{"vpcId": "vpc-1", "subnets": {}, "regoin": "x"}`)); err == nil || !strings.Contains(err.Error(), `unknown field "regoin"`) {
		t.Errorf("misspelt field: %v", err)
	}
	if _, err := aws.ParseConfig(nil); err == nil || !strings.Contains(err.Error(), "vpcId and subnets are required") {
		t.Errorf("empty configuration: %v", err)
	}
	// The binary refuses to serve with a bad configuration, and says why.
	plugin, err := sdk.Open(t.Context(), binary, sdk.OpenOptions{Config: []byte(`{"vpcId": "nope"}`)})
	if err == nil {
		plugin.Close()
		t.Fatal("plugin started with a bad configuration")
	}
}

// params returns the parameters of the calls of action.
func params(fake *awsfake.Server, action string) []map[string]string {
	var out []map[string]string
	for _, r := range fake.Requests() {
		if r.Action == action && r.Problem == "" {
			m := map[string]string{}
			for k, v := range r.Params {
				m[k] = v[0]
			}
			out = append(out, m)
		}
	}
	return out
}

// wantParams fails unless some call of action carries every key=value.
func wantParams(t *testing.T, fake *awsfake.Server, action string, want map[string]string) {
	t.Helper()
	calls := params(fake, action)
	for _, got := range calls {
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("no %s call with %v; calls: %v", action, want, calls)
}

// TestEveryCallMatchesTheAPIReference drives every provider method, then
// checks that the plugin made every call the fake serves (so every shape
// in awsfake/shapes.go is exercised; the fake refuses a request with a
// missing or unknown parameter) and that the parameters that carry
// triad's semantics are the ones the API reference documents.
func TestEveryCallMatchesTheAPIReference(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	c := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var err error
	_, err = p.StopInstance(c, seed.Instance)
	must("StopInstance", err)
	snap, err := p.CreateDiskSnapshot(c, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "op-1-snap", InstanceID: seed.Instance, Labels: map[string]string{"triad.dev/operation": "op-1"}})
	must("CreateDiskSnapshot", err)
	// A clone of every volume: the 8 GiB root and the 20 GiB data volume.
	if snap.SourceImage != seed.Image || snap.SourceInstanceID != seed.Instance || snap.SizeBytes != 28<<30 || !strings.HasPrefix(snap.ID, "ami-") {
		t.Errorf("snapshot = %+v", snap)
	}
	for _, c := range aws.CheckVolumes(p, c, seed.Instance) {
		if !c.OK {
			t.Errorf("volume check of the seed: %+v", c)
		}
	}
	_, err = p.ListDiskSnapshots(c, map[string]string{"triad.dev/operation": "op-1"})
	must("ListDiskSnapshots", err)
	boot := []byte(`{"holdStaticPods":["kube-controller-manager"]}`)
	inst, err := p.CreateInstance(c, sdk.CreateInstanceRequest{IdempotencyToken: "op-1-vm-b", Name: "cp-b", Zone: "eu-west-1b", DiskSnapshotID: snap.ID, BootData: boot, Labels: map[string]string{"triad.dev/operation": "op-1"}})
	must("CreateInstance", err)
	if inst.Image != seed.Image || inst.Zone != "eu-west-1b" || inst.DiskID == "" || inst.Labels["triad.dev/operation"] != "op-1" || inst.Name != "cp-b" {
		t.Errorf("instance = %+v", inst)
	}
	_, err = p.ListInstances(c, map[string]string{"triad.dev/operation": "op-1"})
	must("ListInstances", err)
	for _, a := range []string{seed.PrivateAddress, seed.PublicAddress} {
		_, err = p.ReleaseAddress(c, a)
		must("ReleaseAddress", err)
	}
	_, err = p.ListAddresses(c)
	must("ListAddresses", err)
	var lbs []sdk.LoadBalancer
	for _, spec := range []struct {
		scheme  sdk.LoadBalancerScheme
		address string
	}{{sdk.SchemeInternal, seed.PrivateAddress}, {sdk.SchemePublic, seed.PublicAddress}} {
		lb, err := p.CreateLoadBalancer(c, sdk.CreateLoadBalancerRequest{
			IdempotencyToken: "op-1-lb-" + string(spec.scheme), Name: "apiserver-" + string(spec.scheme), Scheme: spec.scheme, AddressID: spec.address,
			ListenerPort: 6443, BackendPort: 6443, BackendInstanceIDs: []string{inst.ID},
			HealthCheck: sdk.HealthCheck{Port: 9444, Path: "/gate", Interval: time.Second}, Labels: map[string]string{"triad.dev/operation": "op-1"},
		})
		must("CreateLoadBalancer", err)
		lbs = append(lbs, lb)
	}
	if lbs[0].HealthCheck.Interval != 5*time.Second || lbs[0].HealthCheck.Port != 9444 || lbs[0].IP != seed.PrivateAddress || lbs[1].IP != seed.PublicIP {
		t.Errorf("load balancers = %+v", lbs)
	}
	_, err = p.SetLoadBalancerTraffic(c, lbs[0].ID, true)
	must("SetLoadBalancerTraffic on", err)
	got, err := p.SetLoadBalancerBackends(c, lbs[0].ID, nil)
	must("SetLoadBalancerBackends", err)
	if len(got.Backends) != 0 || !got.TrafficEnabled {
		t.Errorf("after clearing backends: %+v", got)
	}
	got, err = p.SetLoadBalancerTraffic(c, lbs[0].ID, false)
	must("SetLoadBalancerTraffic off", err)
	if got.TrafficEnabled {
		t.Error("traffic still enabled")
	}
	all, err := p.ListLoadBalancers(c, map[string]string{"triad.dev/operation": "op-1"})
	must("ListLoadBalancers", err)
	if len(all) != 2 {
		t.Errorf("ListLoadBalancers = %d, want 2", len(all))
	}
	// The rollback: load balancers gone, addresses back, new VM deleted.
	for _, lb := range lbs {
		must("DeleteLoadBalancer", p.DeleteLoadBalancer(c, lb.ID))
	}
	for _, a := range []string{seed.PrivateAddress, seed.PublicAddress} {
		_, err = p.AttachAddress(c, a, seed.Instance)
		must("AttachAddress", err)
	}
	must("DeleteInstance", p.DeleteInstance(c, inst.ID))
	must("DeleteDiskSnapshot", p.DeleteDiskSnapshot(c, snap.ID))
	back, err := p.StartInstance(c, seed.Instance)
	must("StartInstance", err)
	if back.PrivateIP != seed.PrivateAddress || back.PublicIP != seed.PublicIP {
		t.Errorf("seed after the rollback: %+v", back)
	}

	made := map[string]bool{}
	for _, r := range fake.Requests() {
		made[r.Service+":"+r.Action] = true
	}
	for _, a := range awsfake.Actions() {
		if !made[a] {
			t.Errorf("%s is in the fake's shapes but the plugin never called it: drop it or test it", a)
		}
	}

	wantParams(t, fake, "RunInstances", map[string]string{
		// The clone boots itself: every volume from its snapshots.
		"ClientToken": "op-1-vm-b", "ImageId": snap.ID, "MinCount": "1", "MaxCount": "1", "SubnetId": seed.Subnets["eu-west-1b"],
		"UserData": base64.StdEncoding.EncodeToString(boot), "MetadataOptions.HttpTokens": "required",
		// Copied from the stopped source instance.
		"InstanceType": "m6i.large", "SecurityGroupId.1": "sg-0c0ffee0c0ffee000", "KeyName": "ops",
		"IamInstanceProfile.Arn": "arn:aws:iam::123456789012:instance-profile/control-plane", "EbsOptimized": "true",
		"MetadataOptions.HttpPutResponseHopLimit": "2", "TagSpecification.1.ResourceType": "instance", "TagSpecification.2.ResourceType": "volume",
	})
	wantParams(t, fake, "CreateImage", map[string]string{
		"InstanceId": seed.Instance, "NoReboot": "true", "TagSpecification.1.ResourceType": "image", "TagSpecification.2.ResourceType": "snapshot",
		"BlockDeviceMapping.1.DeviceName": "/dev/sdf", "BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
		"BlockDeviceMapping.2.DeviceName": "/dev/xvda", "BlockDeviceMapping.2.Ebs.DeleteOnTermination": "true",
	})
	wantParams(t, fake, "DescribeImages", map[string]string{"Owner.1": "self", "Filter.1.Name": "name"})
	wantParams(t, fake, "DeregisterImage", map[string]string{"ImageId": snap.ID})
	if calls := params(fake, "RunInstances"); len(calls) != 1 || calls[0]["BlockDeviceMapping.1.DeviceName"] != "" {
		t.Errorf("RunInstances of the clone passes block device mappings (they could override its volumes' encryption): %v", calls)
	}
	wantParams(t, fake, "DescribeSnapshots", map[string]string{"Owner.1": "self", "Filter.1.Name": "tag-key", "Filter.1.Value.1": "triad-aws:source-instance"})
	wantParams(t, fake, "UnassignPrivateIpAddresses", map[string]string{"PrivateIpAddress.1": seed.PrivateAddress})
	wantParams(t, fake, "AssignPrivateIpAddresses", map[string]string{"PrivateIpAddress.1": seed.PrivateAddress, "AllowReassignment": "false"})
	wantParams(t, fake, "AssociateAddress", map[string]string{"AllocationId": seed.PublicAddress, "InstanceId": seed.Instance, "AllowReassociation": "false"})
	wantParams(t, fake, "CreateTargetGroup", map[string]string{
		"Protocol": "TCP", "Port": "6443", "VpcId": seed.VPCID, "TargetType": "instance", "HealthCheckProtocol": "HTTPS",
		"HealthCheckPort": "9444", "HealthCheckPath": "/gate", "HealthCheckIntervalSeconds": "5", "Matcher.HttpCode": "200",
	})
	wantParams(t, fake, "ModifyTargetGroupAttributes", map[string]string{"Attributes.member.1.Key": "preserve_client_ip.enabled", "Attributes.member.1.Value": "false"})
	wantParams(t, fake, "CreateLoadBalancer", map[string]string{"Type": "network", "Scheme": "internal", "SubnetMappings.member.1.PrivateIPv4Address": seed.PrivateAddress, "SubnetMappings.member.1.SubnetId": seed.Subnets["eu-west-1a"]})
	wantParams(t, fake, "CreateLoadBalancer", map[string]string{"Type": "network", "Scheme": "internet-facing", "SubnetMappings.member.1.AllocationId": seed.PublicAddress})
	wantParams(t, fake, "ModifyLoadBalancerAttributes", map[string]string{"Attributes.member.1.Key": "load_balancing.cross_zone.enabled", "Attributes.member.1.Value": "true"})
	wantParams(t, fake, "CreateListener", map[string]string{"Protocol": "TCP", "Port": "6443", "DefaultActions.member.1.Type": "forward"})
}

func TestThrottlingIsRetried(t *testing.T) {
	fake := newFake(t)
	p := newProvider(t, fakeConfig(fake))
	count := func(action string) int {
		return len(fake.Requests()) - len(slices.DeleteFunc(fake.Requests(), func(r awsfake.Request) bool { return r.Action == action }))
	}

	fake.Fail("StopInstances", "RequestLimitExceeded", 2)
	if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
		t.Fatalf("StopInstance through two EC2 throttles: %v", err)
	}
	if n := count("StopInstances"); n != 3 {
		t.Errorf("%d StopInstances requests, want 3 (two throttled)", n)
	}
	fake.Fail("DescribeLoadBalancers", "Throttling", 2)
	if _, err := p.ListLoadBalancers(t.Context(), nil); err != nil {
		t.Fatalf("ListLoadBalancers through two ELB throttles: %v", err)
	}
	if n := count("DescribeLoadBalancers"); n != 3 {
		t.Errorf("%d DescribeLoadBalancers requests, want 3", n)
	}

	// Out of attempts: the error says unavailable, which triad retries.
	cfg := fakeConfig(fake)
	cfg.MaxAttempts = 2
	fake.Fail("StartInstances", "RequestLimitExceeded", 5)
	_, err := newProvider(t, cfg).StartInstance(t.Context(), fake.Seed().Instance)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("StartInstance throttled past maxAttempts: %v, want ErrUnavailable naming RequestLimitExceeded", err)
	}
}

func TestAccessDeniedNamesTheMissingAction(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	// EC2's UnauthorizedOperation does not name the action; the plugin does.
	fake.Fail("StopInstances", "UnauthorizedOperation", 1)
	_, err := p.StopInstance(t.Context(), seed.Instance)
	if !errors.Is(err, sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), "lack ec2:StopInstances") {
		t.Fatalf("StopInstance without the permission: %v", err)
	}
	// Across the plugin boundary, as triad sees it.
	plugin := openPlugin(t, fakeConfig(fake))
	fake.Fail("DescribeLoadBalancers", "AccessDenied", 1)
	_, err = plugin.ListLoadBalancers(t.Context(), nil)
	if !errors.Is(err, sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), "lack elasticloadbalancing:DescribeLoadBalancers") {
		t.Fatalf("ListLoadBalancers without the permission, through the plugin: %v", err)
	}
	if n := len(params(fake, "StopInstances")); n != 1 {
		t.Errorf("%d StopInstances requests, want 1: access denied is not worth retrying", n)
	}
}

func TestAPrimaryPrivateIPIsRefusedWithTheReason(t *testing.T) {
	fake := newFake(t)
	cfg := fakeConfig(fake)
	cfg.PrivateAddresses = append(cfg.PrivateAddresses, "10.0.1.5") // the seed's primary IP
	p := newProvider(t, cfg)
	if _, err := p.StopInstance(t.Context(), fake.Seed().Instance); err != nil {
		t.Fatal(err)
	}
	_, err := p.ReleaseAddress(t.Context(), "10.0.1.5")
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "primary private IP") {
		t.Fatalf("releasing a primary IP: %v", err)
	}
	if len(params(fake, "UnassignPrivateIpAddresses")) != 0 {
		t.Fatal("the plugin tried to unassign a primary IP")
	}
}

func TestTheAddressIsFreeWhenDeleteLoadBalancerReturns(t *testing.T) {
	fake := newFake(t)
	fake.Linger = 300 * time.Millisecond // the NLB's interface outlives it
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	c := t.Context()
	if _, err := p.StopInstance(c, seed.Instance); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReleaseAddress(c, seed.PrivateAddress); err != nil {
		t.Fatal(err)
	}
	lb, err := p.CreateLoadBalancer(c, sdk.CreateLoadBalancerRequest{IdempotencyToken: "lb", Name: "lb", Scheme: sdk.SchemeInternal, AddressID: seed.PrivateAddress, ListenerPort: 6443, BackendPort: 6443})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteLoadBalancer(c, lb.ID); err != nil {
		t.Fatal(err)
	}
	// Without the wait, this attach would meet the lingering interface.
	if a, err := p.AttachAddress(c, seed.PrivateAddress, seed.Instance); err != nil || a.InstanceID != seed.Instance {
		t.Fatalf("AttachAddress right after DeleteLoadBalancer: %+v, %v", a, err)
	}
}

// TestREADMEPolicyCoversEveryCall keeps the documented IAM policy and the
// calls the plugin makes in step.
func TestREADMEPolicyCoversEveryCall(t *testing.T) {
	var granted []string
	for _, s := range readmePolicy(t) {
		granted = append(granted, s.Action...)
	}
	for _, a := range awsfake.Actions() {
		if !slices.Contains(granted, a) {
			t.Errorf("the README's policy lacks %s, which the plugin calls", a)
		}
	}
	// Permissions a call needs besides its own action; the KMS ones on
	// the keys of the volumes (TestAKMSEncryptedClone... checks them).
	implied := append([]string{"ec2:CreateTags", "elasticloadbalancing:AddTags", "iam:PassRole"}, awsfake.KMSVolumeActions()...)
	for _, a := range granted {
		if !slices.Contains(awsfake.Actions(), a) && !slices.Contains(implied, a) {
			t.Errorf("the README's policy grants %s, which the plugin never calls", a)
		}
	}
}

func TestARetriedCreateWithOtherParametersIsAlreadyExists(t *testing.T) {
	fake := newFake(t)
	seed := fake.Seed()
	p := newProvider(t, fakeConfig(fake))
	c := t.Context()
	if _, err := p.StopInstance(c, seed.Instance); err != nil {
		t.Fatal(err)
	}
	snap, err := p.CreateDiskSnapshot(c, sdk.CreateDiskSnapshotRequest{IdempotencyToken: "snap", InstanceID: seed.Instance})
	if err != nil {
		t.Fatal(err)
	}
	req := sdk.CreateInstanceRequest{IdempotencyToken: "vm", Name: "vm", Zone: "eu-west-1a", DiskSnapshotID: snap.ID}
	if _, err := p.CreateInstance(c, req); err != nil {
		t.Fatal(err)
	}
	req.Zone = "eu-west-1b" // another subnet under the same ClientToken
	if _, err := p.CreateInstance(c, req); !errors.Is(err, sdk.ErrAlreadyExists) || !strings.Contains(err.Error(), "IdempotentParameterMismatch") {
		t.Fatalf("same token, other zone: %v, want ErrAlreadyExists (IdempotentParameterMismatch)", err)
	}
}

func TestNoAnswerFromAWSIsUnavailable(t *testing.T) {
	fake := newFake(t)
	cfg := fakeConfig(fake)
	cfg.MaxAttempts = 2
	p := newProvider(t, cfg)
	fake.Close() // connection refused from now on
	_, err := p.GetInstance(t.Context(), fake.Seed().Instance)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "ec2:DescribeInstances") {
		t.Fatalf("GetInstance with AWS unreachable: %v, want ErrUnavailable naming the call", err)
	}
}

// TestREADMEExampleConfigurationParses keeps the README's example valid.
func TestREADMEExampleConfigurationParses(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(cloud:.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no yaml block starting with cloud:")
	}
	var doc struct {
		Cloud struct {
			Config json.RawMessage `json:"config"`
		} `json:"cloud"`
	}
	if err := yaml.Unmarshal(m[1], &doc); err != nil {
		t.Fatal(err)
	}
	cfg, err := aws.ParseConfig(doc.Cloud.Config)
	if err != nil {
		t.Fatalf("the README's example: %v", err)
	}
	if cfg.Region != "eu-west-1" || len(cfg.Subnets) != 3 || cfg.PrivateAddresses[0] != "10.0.1.10" {
		t.Errorf("parsed %+v", cfg)
	}
}
