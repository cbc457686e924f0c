// Package awsfake is an in-process server speaking the EC2 and ELBv2 query
// APIs for exactly the calls triad's AWS plugin makes: requests are checked
// against the API reference's shapes (shapes.go), responses are the real XML
// documents, and resources go through AWS's states (pending → running,
// provisioning → active, an NLB's interface lingering after the NLB). It is
// a test double at the HTTP boundary, not an emulator: where its semantics
// are a guess, README.md in cloudplugins/aws says so.
package awsfake

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	ec2Version = "2016-11-15"
	elbVersion = "2015-12-01"
	ec2NS      = "http://ec2.amazonaws.com/doc/2016-11-15/"
	elbNS      = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
	account    = "123456789012"
)

// Request is one API call the server received.
type Request struct {
	Service string // "ec2" or "elasticloadbalancing"
	Action  string
	Params  url.Values
	// Problem is why the request's shape was refused, if it was.
	Problem string
}

// Seed describes the pre-existing world: a VPC with one subnet per zone
// and a running control-plane instance holding a secondary private IP and
// an Elastic IP, with its data volume at /dev/sdf.
type Seed struct {
	Region         string
	VPCID          string
	Subnets        map[string]string // zone → subnet id
	Instance       string
	Image          string
	PrivateAddress string // the secondary private IP
	PublicAddress  string // the Elastic IP's allocation id
	PublicIP       string
	// SecurityGroup is the seed instance's group.
	SecurityGroup string
}

type fault struct {
	code  string
	times int
}

// Server is the fake. Safe for concurrent use.
type Server struct {
	// Settle is how long a resource stays in a transitional state
	// (pending, stopping, provisioning, …); default 20ms.
	Settle time.Duration
	// PageSize is how many items a list call returns before it hands out
	// a next token; default 2, so that every paginated list pages.
	PageSize int
	// Linger is how long an NLB's network interface outlives the NLB;
	// default 5 × Settle.
	Linger time.Duration

	http *httptest.Server
	seed Seed

	mu        sync.Mutex
	seq       int
	requests  []Request
	faults    map[string]*fault
	subnets   map[string]*subnet
	instances map[string]*instance
	tokens    map[string]string
	volumes   map[string]*volume
	snapshots map[string]*snapshot
	eips      map[string]*eip
	enis      map[string]*eni
	lbs       map[string]*lb
	tgs       map[string]*tg
	listeners map[string]*listener
	images    map[string]*image
	// policy is what the caller's IAM policy allows (SetPolicy); nil
	// allows everything.
	policy []string
	// imageFailures is how many of the next images fail (FailImages).
	imageFailures int
	groups        map[string]*secGroup
	// failing marks targets whose health checks fail (SetTargetHealthy).
	failing map[string]bool
}

type subnet struct {
	id, az string
	cidr   netip.Prefix
}

type transition struct {
	next  string
	until time.Time
}

type instance struct {
	id, image, itype, subnet, az, key, profile, token string
	state                                             string
	settings                                          string // to detect IdempotentParameterMismatch
	transition
	eni      *eni
	groups   []string
	tags     map[string]string
	devices  map[string]string // device name → volume id
	launch   time.Time
	userData []byte
	// rootType is "instance-store" for an instance-store-backed
	// instance (SetRootDeviceType); "" is EBS.
	rootType string
	// Launch settings DescribeInstances reports.
	ebsOptimized          bool
	httpTokens, mdTags    string
	hopLimit              int
	reasonCode, reasonMsg string // stateReason
}

type volume struct {
	id, snapshot   string
	size           int
	deleteOnTermin bool
	// volumeType, iops and throughput as DescribeVolumes reports them;
	// kmsKey is the ARN of the key of an encrypted volume.
	volumeType       string
	iops, throughput int
	encrypted        bool
	kmsKey           string
	// attach is the attachment state when it is not "attached"
	// (SetVolumeAttachment).
	attach string
	az     string
}

type snapshot struct {
	id, volume, state, description string
	transition
	size  int
	tags  map[string]string
	start time.Time
	// A snapshot of an encrypted volume is encrypted with its key.
	encrypted bool
	kmsKey    string
	// volumeType, iops and throughput of the volume, for the block device
	// mappings of an image made of it.
	volumeType       string
	iops, throughput int
}

type eip struct {
	alloc, ip, assoc, eni string
}

type eni struct {
	id, subnet, description, ifType, instance string
	ips                                       []string // [0] is the primary
	groups                                    []string // security groups
	gone                                      time.Time
}

type lb struct {
	arn, name, scheme string
	state             string
	transition
	// zones are the subnet mappings, one per enabled zone.
	zones   []lbZone
	groups  []string // security groups
	tags    map[string]string
	attrs   map[string]string
	created time.Time
}

// lbZone is one subnet mapping: the NLB's node in that zone.
type lbZone struct {
	subnet, privateIP, alloc, eni string
}

type tg struct {
	arn, name, protocol, vpc, targetType  string
	port                                  int
	hcProtocol, hcPort, hcPath, matcher   string
	interval, timeout, healthy, unhealthy int
	targets                               []string
	tags, attrs                           map[string]string
	settings                              string
}

type listener struct {
	arn, lb, tg, protocol string
	port                  int
}

// New starts a fake with the seed world in region (e.g. "eu-west-1").
func New(region string) *Server {
	s := &Server{
		Settle: 20 * time.Millisecond, faults: map[string]*fault{},
		subnets: map[string]*subnet{}, instances: map[string]*instance{}, tokens: map[string]string{},
		volumes: map[string]*volume{}, snapshots: map[string]*snapshot{}, eips: map[string]*eip{},
		enis: map[string]*eni{}, lbs: map[string]*lb{}, tgs: map[string]*tg{}, listeners: map[string]*listener{},
		groups: map[string]*secGroup{}, failing: map[string]bool{}, images: map[string]*image{},
	}
	s.seed = Seed{Region: region, VPCID: "vpc-0a1b2c3d4e5f60718", Subnets: map[string]string{}, Image: "ami-0123456789abcdef0"}
	for i, z := range []string{"a", "b", "c"} {
		sn := &subnet{id: s.newID("subnet-"), az: region + z, cidr: netip.MustParsePrefix(fmt.Sprintf("10.0.%d.0/24", i+1))}
		s.subnets[sn.id] = sn
		s.seed.Subnets[sn.az] = sn.id
	}
	first := s.subnets[s.seed.Subnets[region+"a"]]
	seed := s.launch(first, s.seed.Image, "m6i.large", "10.0.1.5", nil)
	seed.groups, seed.profile, seed.key = []string{seedGroup}, "arn:aws:iam::"+account+":instance-profile/control-plane", "ops"
	seed.eni.groups = seed.groups
	// A single kubeadm node's group: the API and SSH from the operators'
	// network, nothing between control-plane nodes (there was one).
	s.groups[seedGroup] = &secGroup{id: seedGroup, name: "control-plane", description: "kubeadm control plane", vpc: s.seed.VPCID,
		ingress: []perm{{proto: "tcp", from: 6443, to: 6443, cidrs: []string{OperatorsCIDR}}, {proto: "tcp", from: 22, to: 22, cidrs: []string{OperatorsCIDR}}}}
	seed.tags = map[string]string{"Name": "cp-0", "kubernetes.io/role": "control-plane"}
	seed.state, seed.next = "running", ""
	seed.ebsOptimized, seed.httpTokens, seed.hopLimit = true, "required", 2
	data := &volume{id: s.newID("vol-"), size: 20, volumeType: "gp3", iops: 3000, throughput: 125, az: first.az}
	s.volumes[data.id] = data
	seed.devices["/dev/sdf"] = data.id
	seed.eni.ips = append(seed.eni.ips, "10.0.1.10")
	e := &eip{alloc: s.newID("eipalloc-"), ip: "203.0.113.10"}
	s.eips[e.alloc] = e
	s.associate(e, seed.eni)
	s.seed.SecurityGroup = seedGroup
	s.seed.Instance, s.seed.PrivateAddress, s.seed.PublicAddress, s.seed.PublicIP = seed.id, "10.0.1.10", e.alloc, e.ip
	s.http = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the endpoint of both services.
func (s *Server) URL() string { return s.http.URL }

// Close stops the server.
func (s *Server) Close() { s.http.Close() }

// Seed describes the pre-existing world.
func (s *Server) Seed() Seed { return s.seed }

// Fail makes the next times calls of action fail with the AWS error code
// (RequestLimitExceeded, Throttling, UnauthorizedOperation, AccessDenied,
// or any other), as AWS would send it.
func (s *Server) Fail(action, code string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[action] = &fault{code: code, times: times}
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// SetInstanceState forces an instance's state, as an outside event would
// (an operator, a host failure): "stopped", "terminated".
func (s *Server) SetInstanceState(id, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.state, in.next = state, ""
		if state == "terminated" {
			s.terminated(in)
		}
	}
}

func (s *Server) newID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%017x", prefix, 0xa0000+s.seq)
}

// apiError is an error response.
type apiError struct {
	status        int
	code, message string
}

func errorf(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

var statusOf = map[string]int{
	"RequestLimitExceeded": http.StatusServiceUnavailable, "UnauthorizedOperation": http.StatusForbidden,
	"AccessDenied": http.StatusForbidden, "AuthFailure": http.StatusUnauthorized, "InternalError": http.StatusInternalServerError,
}

var credential = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=[^/]+/[0-9]{8}/([^/]+)/([^/]+)/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "query API requests are form POSTs", http.StatusBadRequest)
		return
	}
	form := r.PostForm
	action, version := form.Get("Action"), form.Get("Version")
	service, shapes := "", map[string]shape(nil)
	switch version {
	case ec2Version:
		service, shapes = "ec2", ec2Shapes
	case elbVersion:
		service, shapes = "elasticloadbalancing", elbShapes
	default:
		http.Error(w, "unknown API version "+version, http.StatusBadRequest)
		return
	}
	var keys []string
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rec := Request{Service: service, Action: action, Params: form}

	s.mu.Lock()
	defer s.mu.Unlock()
	var aerr *apiError
	var body any
	sh, known := shapes[action]
	switch m := credential.FindStringSubmatch(r.Header.Get("Authorization")); {
	case m == nil:
		aerr = &apiError{http.StatusUnauthorized, "IncompleteSignature", "the request is not signed with SigV4"}
	case m[1] != s.seed.Region || m[2] != service:
		aerr = &apiError{http.StatusUnauthorized, "AuthFailure", fmt.Sprintf("credential scope %s/%s, want %s/%s", m[1], m[2], s.seed.Region, service)}
	case !known:
		aerr = errorf("InvalidAction", "The action %s is not valid for this web service (or the fake does not serve it).", action)
	default:
		if code, msg := sh.check(keys); code != "" {
			rec.Problem = code + ": " + msg
			aerr = errorf(code, "%s", msg)
		} else if code, msg := s.denied(service, action, query{form}); code != "" {
			aerr = &apiError{statusOf[code], code, msg}
		} else if f := s.faults[action]; f != nil && f.times > 0 {
			f.times--
			aerr = &apiError{statusOf[f.code], f.code, faultMessage(service, action, f.code)}
			if aerr.status == 0 {
				aerr.status = http.StatusBadRequest
			}
		} else {
			s.advance()
			q := query{form}
			if service == "ec2" {
				if body, aerr, known = s.ec2Security(action, q); !known {
					body, aerr = s.ec2(action, q)
				}
			} else {
				body, aerr = s.elb(action, q)
			}
		}
	}
	s.requests = append(s.requests, rec)
	reqID := fmt.Sprintf("req-%06d", len(s.requests))
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("X-Amzn-Requestid", reqID)
	var buf bytes.Buffer
	switch {
	case aerr != nil && service == "ec2":
		w.WriteHeader(aerr.status)
		fmt.Fprintf(&buf, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`, esc(aerr.code), esc(aerr.message), reqID)
	case aerr != nil:
		w.WriteHeader(aerr.status)
		fmt.Fprintf(&buf, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`, elbNS, esc(aerr.code), esc(aerr.message), reqID)
	case service == "ec2":
		fmt.Fprintf(&buf, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<%sResponse xmlns="%s"><requestId>%s</requestId>%s</%sResponse>`, action, ec2NS, reqID, inner(body), action)
	default:
		fmt.Fprintf(&buf, `<%sResponse xmlns="%s"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, action, elbNS, action, inner(body), action, reqID, action)
	}
	w.Write(buf.Bytes())
}

func faultMessage(service, action, code string) string {
	switch code {
	case "UnauthorizedOperation":
		// EC2 does not name the action; its encoded message would.
		return "You are not authorized to perform this operation. Encoded authorization failure message: " + base64.StdEncoding.EncodeToString([]byte(action))
	case "AccessDenied":
		return fmt.Sprintf("User: arn:aws:sts::%s:assumed-role/triad/session is not authorized to perform: %s:%s", account, service, action)
	case "RequestLimitExceeded":
		return "Request limit exceeded."
	case "Throttling":
		return "Rate exceeded"
	}
	return "injected " + code
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// inner marshals v's fields: they become the children of the response
// element.
func inner(v any) string {
	if v == nil {
		return ""
	}
	type envelope struct {
		XMLName xml.Name `xml:"e"`
		Body    any      `xml:"b"`
	}
	b, err := xml.Marshal(envelope{Body: v})
	if err != nil {
		panic(err)
	}
	s := strings.TrimPrefix(string(b), "<e><b>")
	return strings.TrimSuffix(s, "</b></e>")
}

// advance moves every resource whose transitional state has lasted Settle
// to its next state.
func (s *Server) advance() {
	now := time.Now()
	for _, in := range s.instances {
		if in.next != "" && !now.Before(in.until) {
			in.state, in.next = in.next, ""
			if in.state == "terminated" {
				s.terminated(in)
			}
		}
	}
	for _, sn := range s.snapshots {
		if sn.next != "" && !now.Before(sn.until) {
			sn.state, sn.next = sn.next, ""
		}
	}
	s.advanceImages(now)
	for _, l := range s.lbs {
		if l.next != "" && !now.Before(l.until) {
			l.state, l.next = l.next, ""
		}
	}
	for id, e := range s.enis {
		if !e.gone.IsZero() && !now.Before(e.gone) {
			for _, a := range s.eips {
				if a.eni == id {
					a.assoc, a.eni = "", ""
				}
			}
			delete(s.enis, id)
		}
	}
}

func (s *Server) after(next string) transition {
	return transition{next: next, until: time.Now().Add(s.Settle)}
}

// query reads query-protocol parameters.
type query struct{ url.Values }

// list returns prefix.1, prefix.2, … until one is missing.
func (q query) list(prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := q.Values[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// structs returns the prefixes prefix.1, prefix.2, … that have any key.
func (q query) structs(prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		p := prefix + "." + strconv.Itoa(i) + "."
		found := false
		for k := range q.Values {
			if strings.HasPrefix(k, p) {
				found = true
				break
			}
		}
		if !found {
			return out
		}
		out = append(out, p)
	}
}

func (q query) int(key string, def int) int {
	if v := q.Get(key); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return def
}

// filters returns EC2 filters: name → values.
func (q query) filters() map[string][]string {
	f := map[string][]string{}
	for _, p := range q.structs("Filter") {
		f[q.Get(p+"Name")] = q.list(p + "Value")
	}
	return f
}

// tagSpecs returns EC2 TagSpecifications: resource type → tags.
func (q query) tagSpecs() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, p := range q.structs("TagSpecification") {
		tags := map[string]string{}
		for _, t := range q.structs(p + "Tag") {
			tags[q.Get(t+"Key")] = q.Get(t + "Value")
		}
		out[q.Get(p+"ResourceType")] = tags
	}
	return out
}

func (q query) elbTags() map[string]string {
	tags := map[string]string{}
	for _, t := range q.structs("Tags.member") {
		tags[q.Get(t+"Key")] = q.Get(t + "Value")
	}
	return tags
}

func xTags(m map[string]string) []xTag {
	var out []xTag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, xTag{k, m[k]})
	}
	return out
}

func eTags(m map[string]string) []eTag {
	var out []eTag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, eTag{k, m[k]})
	}
	return out
}

// matchTags applies tag:K and tag-key filters.
func matchTags(tags map[string]string, f map[string][]string) bool {
	for name, values := range f {
		switch {
		case strings.HasPrefix(name, "tag:"):
			if !slices.Contains(values, tags[strings.TrimPrefix(name, "tag:")]) {
				return false
			}
			if _, ok := tags[strings.TrimPrefix(name, "tag:")]; !ok {
				return false
			}
		case name == "tag-key":
			if !slices.ContainsFunc(values, func(k string) bool { _, ok := tags[k]; return ok }) {
				return false
			}
		}
	}
	return true
}

// checkFilters refuses filter names the action does not support.
func checkFilters(f map[string][]string, supported ...string) *apiError {
	for name := range f {
		if !slices.Contains(supported, name) && !strings.HasPrefix(name, "tag:") && name != "tag-key" {
			return errorf("InvalidParameterValue", "The filter '%s' is invalid", name)
		}
	}
	return nil
}

// page returns the page of items that token starts, and the token of the
// next page ("" on the last). Tokens are offsets; AWS's are opaque.
func page[T any](s *Server, items []T, token string) ([]T, string) {
	size := s.PageSize
	if size <= 0 {
		size = 2
	}
	start, _ := strconv.Atoi(token)
	start = min(max(start, 0), len(items))
	end := min(start+size, len(items))
	if end < len(items) {
		return items[start:end], strconv.Itoa(end)
	}
	return items[start:end], ""
}
