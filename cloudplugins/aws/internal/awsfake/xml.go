package awsfake

// Response documents of the EC2 (ec2query) and ELBv2 (awsquery) APIs, with
// the element names of the API references. Only the fields triad's plugin
// reads, plus the ones that make a response recognisable, are written.

type xTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xGroup struct {
	GroupID string `xml:"groupId"`
}

type xProfile struct {
	Arn string `xml:"arn"`
}

type xEBS struct {
	VolumeID            string `xml:"volumeId"`
	Status              string `xml:"status"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xBDM struct {
	DeviceName string `xml:"deviceName"`
	EBS        xEBS   `xml:"ebs"`
}

type xPrivateIP struct {
	PrivateIPAddress string `xml:"privateIpAddress"`
	Primary          bool   `xml:"primary"`
}

type xAttachment struct {
	AttachmentID string `xml:"attachmentId"`
	InstanceID   string `xml:"instanceId,omitempty"`
	DeviceIndex  int    `xml:"deviceIndex"`
	Status       string `xml:"status"`
}

type xInstanceENI struct {
	NetworkInterfaceID string       `xml:"networkInterfaceId"`
	SubnetID           string       `xml:"subnetId"`
	VpcID              string       `xml:"vpcId"`
	PrivateIPAddress   string       `xml:"privateIpAddress"`
	Attachment         xAttachment  `xml:"attachment"`
	PrivateIPs         []xPrivateIP `xml:"privateIpAddressesSet>item"`
}

type xPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
}

type xInstance struct {
	InstanceID     string         `xml:"instanceId"`
	ImageID        string         `xml:"imageId"`
	State          xState         `xml:"instanceState"`
	PrivateIP      string         `xml:"privateIpAddress,omitempty"`
	PublicIP       string         `xml:"ipAddress,omitempty"`
	Placement      xPlacement     `xml:"placement"`
	InstanceType   string         `xml:"instanceType"`
	SubnetID       string         `xml:"subnetId,omitempty"`
	VpcID          string         `xml:"vpcId,omitempty"`
	KeyName        string         `xml:"keyName,omitempty"`
	LaunchTime     string         `xml:"launchTime"`
	ClientToken    string         `xml:"clientToken,omitempty"`
	RootDeviceName string         `xml:"rootDeviceName"`
	RootDeviceType string         `xml:"rootDeviceType"`
	EbsOptimized   bool           `xml:"ebsOptimized"`
	Metadata       *xMetadata     `xml:"metadataOptions,omitempty"`
	Reason         string         `xml:"reason"`
	StateReason    *xStateReason  `xml:"stateReason,omitempty"`
	Groups         []xGroup       `xml:"groupSet>item"`
	Profile        *xProfile      `xml:"iamInstanceProfile,omitempty"`
	BDM            []xBDM         `xml:"blockDeviceMapping>item"`
	ENIs           []xInstanceENI `xml:"networkInterfaceSet>item"`
	Tags           []xTag         `xml:"tagSet>item"`
}

// xStateReason is why an instance (or image) is in its state.
type xStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xMetadata struct {
	State        string `xml:"state"`
	HTTPTokens   string `xml:"httpTokens"`
	HopLimit     int    `xml:"httpPutResponseHopLimit"`
	HTTPEndpoint string `xml:"httpEndpoint"`
	Tags         string `xml:"instanceMetadataTags"`
}

type xReservation struct {
	ReservationID string      `xml:"reservationId"`
	OwnerID       string      `xml:"ownerId"`
	Instances     []xInstance `xml:"instancesSet>item"`
}

type xStateChange struct {
	InstanceID    string `xml:"instanceId"`
	CurrentState  xState `xml:"currentState"`
	PreviousState xState `xml:"previousState"`
}

type xSnapshot struct {
	SnapshotID  string `xml:"snapshotId"`
	VolumeID    string `xml:"volumeId"`
	Status      string `xml:"status"`
	StartTime   string `xml:"startTime"`
	Progress    string `xml:"progress"`
	OwnerID     string `xml:"ownerId"`
	VolumeSize  int    `xml:"volumeSize"`
	Description string `xml:"description"`
	Encrypted   bool   `xml:"encrypted"`
	KmsKeyID    string `xml:"kmsKeyId,omitempty"`
	Tags        []xTag `xml:"tagSet>item"`
}

type xAddress struct {
	PublicIP                string `xml:"publicIp"`
	AllocationID            string `xml:"allocationId"`
	Domain                  string `xml:"domain"`
	InstanceID              string `xml:"instanceId,omitempty"`
	AssociationID           string `xml:"associationId,omitempty"`
	NetworkInterfaceID      string `xml:"networkInterfaceId,omitempty"`
	NetworkInterfaceOwnerID string `xml:"networkInterfaceOwnerId,omitempty"`
	PrivateIPAddress        string `xml:"privateIpAddress,omitempty"`
}

type xENI struct {
	NetworkInterfaceID string       `xml:"networkInterfaceId"`
	SubnetID           string       `xml:"subnetId"`
	VpcID              string       `xml:"vpcId"`
	AvailabilityZone   string       `xml:"availabilityZone"`
	Description        string       `xml:"description"`
	InterfaceType      string       `xml:"interfaceType"`
	RequesterManaged   bool         `xml:"requesterManaged"`
	Status             string       `xml:"status"`
	PrivateIPAddress   string       `xml:"privateIpAddress"`
	Attachment         *xAttachment `xml:"attachment,omitempty"`
	PrivateIPs         []xPrivateIP `xml:"privateIpAddressesSet>item"`
}

type xSubnet struct {
	SubnetID         string `xml:"subnetId"`
	VpcID            string `xml:"vpcId"`
	AvailabilityZone string `xml:"availabilityZone"`
	CidrBlock        string `xml:"cidrBlock"`
	State            string `xml:"state"`
}

// ELBv2 (member lists, PascalCase).

type eTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

type eLBAddress struct {
	IPAddress          string `xml:"IpAddress,omitempty"`
	AllocationID       string `xml:"AllocationId,omitempty"`
	PrivateIPv4Address string `xml:"PrivateIPv4Address,omitempty"`
}

type eAZ struct {
	ZoneName  string       `xml:"ZoneName"`
	SubnetID  string       `xml:"SubnetId"`
	Addresses []eLBAddress `xml:"LoadBalancerAddresses>member"`
}

type eLB struct {
	LoadBalancerArn  string `xml:"LoadBalancerArn"`
	DNSName          string `xml:"DNSName"`
	LoadBalancerName string `xml:"LoadBalancerName"`
	Scheme           string `xml:"Scheme"`
	VpcID            string `xml:"VpcId"`
	State            struct {
		Code string `xml:"Code"`
	} `xml:"State"`
	Type           string   `xml:"Type"`
	IPAddressType  string   `xml:"IpAddressType"`
	CreatedTime    string   `xml:"CreatedTime"`
	AZs            []eAZ    `xml:"AvailabilityZones>member"`
	SecurityGroups []string `xml:"SecurityGroups>member,omitempty"`
}

type eTG struct {
	TargetGroupArn             string   `xml:"TargetGroupArn"`
	TargetGroupName            string   `xml:"TargetGroupName"`
	Protocol                   string   `xml:"Protocol"`
	Port                       int      `xml:"Port"`
	VpcID                      string   `xml:"VpcId"`
	HealthCheckProtocol        string   `xml:"HealthCheckProtocol"`
	HealthCheckPort            string   `xml:"HealthCheckPort"`
	HealthCheckEnabled         bool     `xml:"HealthCheckEnabled"`
	HealthCheckIntervalSeconds int      `xml:"HealthCheckIntervalSeconds"`
	HealthCheckTimeoutSeconds  int      `xml:"HealthCheckTimeoutSeconds"`
	HealthyThresholdCount      int      `xml:"HealthyThresholdCount"`
	UnhealthyThresholdCount    int      `xml:"UnhealthyThresholdCount"`
	HealthCheckPath            string   `xml:"HealthCheckPath"`
	MatcherHTTPCode            string   `xml:"Matcher>HttpCode"`
	TargetType                 string   `xml:"TargetType"`
	LoadBalancerArns           []string `xml:"LoadBalancerArns>member"`
}

type eTargetHealth struct {
	Target struct {
		ID   string `xml:"Id"`
		Port int    `xml:"Port"`
	} `xml:"Target"`
	HealthCheckPort string `xml:"HealthCheckPort"`
	TargetHealth    struct {
		State       string `xml:"State"`
		Reason      string `xml:"Reason,omitempty"`
		Description string `xml:"Description,omitempty"`
	} `xml:"TargetHealth"`
}

type eTagDescription struct {
	ResourceArn string `xml:"ResourceArn"`
	Tags        []eTag `xml:"Tags>member"`
}

type eAction struct {
	Type           string `xml:"Type"`
	TargetGroupArn string `xml:"TargetGroupArn"`
}

type eListener struct {
	ListenerArn     string    `xml:"ListenerArn"`
	LoadBalancerArn string    `xml:"LoadBalancerArn"`
	Port            int       `xml:"Port"`
	Protocol        string    `xml:"Protocol"`
	DefaultActions  []eAction `xml:"DefaultActions>member"`
}

type eAttribute struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}
