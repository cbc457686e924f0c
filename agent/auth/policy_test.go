package auth_test

import (
	"crypto/x509"
	"net/url"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triad-k8s/triad/agent/auth"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Every RPC that an observer may not call changes the node (or, like
// TakeSnapshot, reads secrets) and so must carry the fencing header; every
// RPC an observer may call must not. A new RPC added to the proto without a
// header fails here rather than slipping past fencing.
func TestEveryMutatingRPCCarriesARequestHeader(t *testing.T) {
	svc := agentv1.File_triad_agent_v1_agent_proto.Services().ByName("AgentService")
	headerType := (&agentv1.RequestHeader{}).ProtoReflect().Descriptor().FullName()
	for i := 0; i < svc.Methods().Len(); i++ {
		m := svc.Methods().Get(i)
		full := "/" + string(svc.FullName()) + "/" + string(m.Name())
		carries := carriesHeader(m.Input(), headerType)
		if auth.ReadOnly(full) && carries {
			t.Errorf("%s is open to observers but carries a request header", full)
		}
		if !auth.ReadOnly(full) && !carries {
			t.Errorf("%s requires the coordinator role but its request carries no header", full)
		}
	}
}

// carriesHeader reports whether msg has a RequestHeader field directly or in
// a message field of a oneof (the first message of a client stream).
func carriesHeader(msg protoreflect.MessageDescriptor, header protoreflect.FullName) bool {
	for i := 0; i < msg.Fields().Len(); i++ {
		f := msg.Fields().Get(i)
		if f.Message() == nil {
			continue
		}
		if f.Message().FullName() == header {
			return true
		}
		if f.ContainingOneof() != nil && carriesHeader(f.Message(), header) {
			return true
		}
	}
	return false
}

func TestAuthorize(t *testing.T) {
	cases := []struct {
		name   string
		role   auth.Role
		method string
		allow  bool
	}{
		{"the coordinator may mutate", auth.RoleCoordinator, agentv1.AgentService_SetGate_FullMethodName, true},
		{"an observer may read health", auth.RoleObserver, agentv1.AgentService_WatchHealth_FullMethodName, true},
		{"an observer may not open the gate", auth.RoleObserver, agentv1.AgentService_SetGate_FullMethodName, false},
		{"an observer may not take a snapshot", auth.RoleObserver, agentv1.AgentService_TakeSnapshot_FullMethodName, false},
		{"an agent certificate may call nothing", auth.RoleAgent, agentv1.AgentService_GetInfo_FullMethodName, false},
		{"an observer may not call an unknown method", auth.RoleObserver, "/triad.agent.v1.AgentService/Future", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := auth.Authorize(tc.role, tc.method)
			if (err == nil) != tc.allow {
				t.Fatalf("Authorize(%s, %s) = %v, want allow=%v", tc.role, tc.method, err, tc.allow)
			}
		})
	}
}

func TestRoleFromCertificate(t *testing.T) {
	u := func(s string) *url.URL {
		parsed, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return parsed
	}
	cases := []struct {
		name    string
		uris    []*url.URL
		want    auth.Role
		wantErr bool
	}{
		{"one role", []*url.URL{auth.RoleURI(auth.RoleObserver)}, auth.RoleObserver, false},
		{"no role", nil, "", true},
		{"an unknown role", []*url.URL{u("triad://role/admin")}, "", true},
		{"two roles", []*url.URL{auth.RoleURI(auth.RoleObserver), auth.RoleURI(auth.RoleCoordinator)}, "", true},
		{"an unrelated URI next to a role", []*url.URL{u("spiffe://example/x"), auth.RoleURI(auth.RoleCoordinator)}, auth.RoleCoordinator, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.RoleFromCertificate(&x509.Certificate{URIs: tc.uris})
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got (%q, %v), want (%q, err=%v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestValidateClusterName(t *testing.T) {
	for name, valid := range map[string]bool{
		"prod-eu1": true, "a": true, "": false, "-a": false, "a-": false,
		"Prod": false, "a.b": false, "a/b": false, string(make([]byte, 64)): false,
	} {
		if err := auth.ValidateClusterName(name); (err == nil) != valid {
			t.Errorf("ValidateClusterName(%q) = %v, want valid=%v", name, err, valid)
		}
	}
}
