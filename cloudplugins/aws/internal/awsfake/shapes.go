package awsfake

import (
	"regexp"
	"slices"
	"strings"
)

// shape is what the AWS API reference allows in one action's request, in
// query-protocol keys with list indexes written N: which parameters must be
// there (required by the reference, or conditionally required and always
// sent by the plugin, like AssociateAddress's AllocationId in a VPC) and
// which may. Only the parameters triad's plugin has a use for
// are listed as allowed; a request with any other parameter is refused
// (UnknownParameter), so a new parameter in the plugin needs a line here,
// checked against the reference.
type shape struct {
	required []string
	allowed  []string
}

var (
	ec2Filter = []string{"Filter.N.Name", "Filter.N.Value.N"}
	ec2Tags   = []string{"TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key", "TagSpecification.N.Tag.N.Value"}
	elbTags   = []string{"Tags.member.N.Key", "Tags.member.N.Value"}
	elbPage   = []string{"Marker", "PageSize"}
	common    = []string{"Action", "Version", "DryRun"}
)

func cat(lists ...[]string) []string { return slices.Concat(lists...) }

// ec2Shapes: Amazon EC2 API Reference, API version 2016-11-15,
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_<Action>.html
var ec2Shapes = map[string]shape{
	"DescribeInstances": {allowed: cat([]string{"InstanceId.N", "MaxResults", "NextToken"}, ec2Filter)},
	"RunInstances": {
		// ImageId is required unless a launch template names one; the
		// plugin uses no launch template.
		required: []string{"ImageId", "MinCount", "MaxCount"},
		allowed: cat([]string{
			"ClientToken", "InstanceType", "SubnetId", "SecurityGroupId.N", "PrivateIpAddress", "UserData",
			"IamInstanceProfile.Arn", "IamInstanceProfile.Name", "KeyName",
			"BlockDeviceMapping.N.DeviceName", "BlockDeviceMapping.N.Ebs.SnapshotId", "BlockDeviceMapping.N.Ebs.VolumeType",
			"BlockDeviceMapping.N.Ebs.DeleteOnTermination", "MetadataOptions.HttpTokens", "MetadataOptions.HttpEndpoint",
			// A clone's volumes on another image (size, IOPS and throughput
			// of the clone's mapping), the source's EBS optimization and
			// IMDS settings: API_RunInstances.html, API_EbsBlockDevice.html,
			// API_InstanceMetadataOptionsRequest.html.
			"BlockDeviceMapping.N.Ebs.VolumeSize", "BlockDeviceMapping.N.Ebs.Iops", "BlockDeviceMapping.N.Ebs.Throughput",
			"EbsOptimized", "MetadataOptions.HttpPutResponseHopLimit", "MetadataOptions.InstanceMetadataTags",
		}, ec2Tags),
	},
	"StopInstances":      {required: []string{"InstanceId.1"}, allowed: []string{"InstanceId.N", "Force", "Hibernate"}},
	"StartInstances":     {required: []string{"InstanceId.1"}, allowed: []string{"InstanceId.N"}},
	"TerminateInstances": {required: []string{"InstanceId.1"}, allowed: []string{"InstanceId.N"}},
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html:
	// a mapping may only change DeleteOnTermination of the instance's volumes.
	"CreateImage": {required: []string{"InstanceId", "Name"}, allowed: cat([]string{
		"Description", "NoReboot", "BlockDeviceMapping.N.DeviceName", "BlockDeviceMapping.N.Ebs.DeleteOnTermination",
	}, ec2Tags)},
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeImages.html
	"DescribeImages": {allowed: cat([]string{"ImageId.N", "Owner.N", "MaxResults", "NextToken"}, ec2Filter)},
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeregisterImage.html
	"DeregisterImage": {required: []string{"ImageId"}},
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeVolumes.html
	"DescribeVolumes":            {allowed: cat([]string{"VolumeId.N", "MaxResults", "NextToken"}, ec2Filter)},
	"DescribeSnapshots":          {allowed: cat([]string{"SnapshotId.N", "Owner.N", "MaxResults", "NextToken"}, ec2Filter)},
	"DeleteSnapshot":             {required: []string{"SnapshotId"}},
	"DescribeAddresses":          {allowed: cat([]string{"AllocationId.N", "PublicIp.N"}, ec2Filter)},
	"AssociateAddress":           {required: []string{"AllocationId", "InstanceId"}, allowed: []string{"AllowReassociation"}},
	"DisassociateAddress":        {required: []string{"AssociationId"}},
	"AssignPrivateIpAddresses":   {required: []string{"NetworkInterfaceId", "PrivateIpAddress.1"}, allowed: []string{"PrivateIpAddress.N", "AllowReassignment"}},
	"UnassignPrivateIpAddresses": {required: []string{"NetworkInterfaceId", "PrivateIpAddress.1"}, allowed: []string{"PrivateIpAddress.N"}},
	"DescribeNetworkInterfaces":  {allowed: cat([]string{"NetworkInterfaceId.N", "MaxResults", "NextToken"}, ec2Filter)},
	"DescribeSubnets":            {allowed: cat([]string{"SubnetId.N", "MaxResults", "NextToken"}, ec2Filter)},
	"DescribeVpcs":               {allowed: []string{"VpcId.N"}},
	"DescribeSecurityGroups":     {allowed: cat([]string{"GroupId.N"}, ec2Filter)},
	"CreateSecurityGroup":        {required: []string{"GroupName", "GroupDescription"}, allowed: cat([]string{"VpcId"}, ec2Tags)},
	"AuthorizeSecurityGroupIngress": {required: []string{"GroupId"}, allowed: []string{
		"IpPermissions.N.IpProtocol", "IpPermissions.N.FromPort", "IpPermissions.N.ToPort",
		"IpPermissions.N.IpRanges.N.CidrIp", "IpPermissions.N.IpRanges.N.Description", "IpPermissions.N.Groups.N.GroupId",
	}},
	"DeleteSecurityGroup": {allowed: []string{"GroupId"}},
}

// elbShapes: Elastic Load Balancing API Reference, API version 2015-12-01,
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_<Action>.html
var elbShapes = map[string]shape{
	"DescribeLoadBalancers": {allowed: cat([]string{"LoadBalancerArns.member.N", "Names.member.N"}, elbPage)},
	"DescribeTags":          {required: []string{"ResourceArns.member.1"}, allowed: []string{"ResourceArns.member.N"}},
	"DescribeTargetGroups":  {allowed: cat([]string{"TargetGroupArns.member.N", "Names.member.N", "LoadBalancerArn"}, elbPage)},
	"DescribeTargetHealth":  {required: []string{"TargetGroupArn"}, allowed: []string{"Targets.member.N.Id", "Targets.member.N.Port"}},
	"DescribeListeners":     {allowed: cat([]string{"LoadBalancerArn", "ListenerArns.member.N"}, elbPage)},
	"CreateTargetGroup": {
		required: []string{"Name"},
		allowed: cat([]string{
			"Protocol", "Port", "VpcId", "TargetType", "HealthCheckEnabled", "HealthCheckProtocol", "HealthCheckPort",
			"HealthCheckPath", "HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds", "HealthyThresholdCount",
			"UnhealthyThresholdCount", "Matcher.HttpCode",
		}, elbTags),
	},
	"ModifyTargetGroupAttributes": {required: []string{"TargetGroupArn", "Attributes.member.1.Key"}, allowed: []string{"Attributes.member.N.Key", "Attributes.member.N.Value"}},
	"CreateLoadBalancer": {
		required: []string{"Name"},
		allowed: cat([]string{
			"Type", "Scheme", "IpAddressType", "SubnetMappings.member.N.SubnetId",
			"SubnetMappings.member.N.PrivateIPv4Address", "SubnetMappings.member.N.AllocationId", "SecurityGroups.member.N",
		}, elbTags),
	},
	"ModifyLoadBalancerAttributes": {required: []string{"LoadBalancerArn", "Attributes.member.1.Key"}, allowed: []string{"Attributes.member.N.Key", "Attributes.member.N.Value"}},
	"RegisterTargets":              {required: []string{"TargetGroupArn", "Targets.member.1.Id"}, allowed: []string{"Targets.member.N.Id", "Targets.member.N.Port"}},
	"DeregisterTargets":            {required: []string{"TargetGroupArn", "Targets.member.1.Id"}, allowed: []string{"Targets.member.N.Id", "Targets.member.N.Port"}},
	"CreateListener": {
		required: []string{"LoadBalancerArn", "DefaultActions.member.1.Type"},
		allowed:  []string{"Protocol", "Port", "DefaultActions.member.N.Type", "DefaultActions.member.N.TargetGroupArn"},
	},
	"DeleteListener":     {required: []string{"ListenerArn"}},
	"DeleteLoadBalancer": {required: []string{"LoadBalancerArn"}},
	"DeleteTargetGroup":  {required: []string{"TargetGroupArn"}},
}

var index = regexp.MustCompile(`\.[0-9]+(\.|$)`)

// normalize writes a key's list indexes as N: Filter.2.Value.1 → Filter.N.Value.N.
func normalize(key string) string {
	for {
		n := index.ReplaceAllString(key, ".N$1")
		if n == key {
			return n
		}
		key = n
	}
}

// check returns the problem with a request's keys against s, or "".
func (s shape) check(keys []string) (code, msg string) {
	for _, r := range s.required {
		if !slices.Contains(keys, r) {
			return "MissingParameter", "The request must contain the parameter " + r
		}
	}
	for _, k := range keys {
		n := normalize(k)
		if !slices.Contains(common, k) && !slices.Contains(s.allowed, n) && !slices.Contains(s.required, k) {
			return "UnknownParameter", "The parameter " + strings.TrimSpace(k) + " is not recognized"
		}
	}
	return "", ""
}

// Actions returns every action the fake serves, as IAM actions
// (ec2:RunInstances, elasticloadbalancing:CreateListener, ...), sorted.
func Actions() []string {
	var out []string
	for a := range ec2Shapes {
		out = append(out, "ec2:"+a)
	}
	for a := range elbShapes {
		out = append(out, "elasticloadbalancing:"+a)
	}
	slices.Sort(out)
	return out
}
