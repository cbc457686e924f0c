package migrate

import (
	"fmt"
	"maps"
	"slices"

	"github.com/triad-k8s/triad/coordinator/controlplane"
)

// kubeconfigPolicy is what the kubeconfigs of a node may name after the
// migration: the static addresses the load balancers take over, the
// controlPlaneEndpoint recorded at preflight, loopback, and own, the
// node's own address ("" for the original at preflight). The original
// VM's own addresses, where they are not the static ones, go with it.
func (s *State) kubeconfigPolicy(own string) controlplane.KubeconfigPolicy {
	p := controlplane.KubeconfigPolicy{Own: own, Live: []string{s.PrivateIP, s.PublicIP}, ControlPlaneEndpoint: s.Baseline.ControlPlaneEndpoint, Gone: map[string]string{}}
	if a := s.Original.PrivateIP; a != "" && a != s.PrivateIP {
		p.Gone[a] = fmt.Sprintf("the original VM's private address, which goes with it (the load balancer takes over %s, not it)", s.PrivateIP)
	}
	if own != "" {
		p.Want = slices.Sorted(maps.Keys(s.Baseline.Kubeconfigs))
	}
	return p
}
