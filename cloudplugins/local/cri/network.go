package cri

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultPodCIDR is where pod addresses come from until the kubelet sends a
// pod CIDR (UpdateRuntimeConfig); it is the range containerd's default CNI
// configuration uses.
const defaultPodCIDR = "10.88.0.0/16"

// allocateIP picks the lowest free address of the pod CIDR, skipping the
// network address and the first host (a bridge's, by convention); callers
// hold s.mu.
func (s *Server) allocateIP() (string, error) {
	cidr := defaultPodCIDR
	for _, c := range strings.Split(s.podCIDR, ",") {
		if ip, _, err := net.ParseCIDR(strings.TrimSpace(c)); err == nil && ip.To4() != nil {
			cidr = strings.TrimSpace(c)
			break
		}
	}
	_, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return "", fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	used := map[string]bool{}
	for _, sb := range s.sandboxes {
		if sb.IP != "" && sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			used[sb.IP] = true
		}
	}
	ip := ipnet.IP.To4()
	next := func(ip net.IP) net.IP {
		out := make(net.IP, 4)
		copy(out, ip)
		for i := 3; i >= 0; i-- {
			out[i]++
			if out[i] != 0 {
				break
			}
		}
		return out
	}
	ip = next(next(ip))
	for ; ipnet.Contains(ip); ip = next(ip) {
		if b := next(ip); !ipnet.Contains(b) { // the broadcast address
			break
		}
		if !used[ip.String()] {
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s is exhausted", cidr)
}

// addPodIP adds ip/32 to lo of the runtime's network namespace, so the
// pod's processes can bind it and everyone in the VM can reach them there.
func addPodIP(ip string) error {
	return podIP(ip, true)
}

func delPodIP(ip string) error {
	return podIP(ip, false)
}

func podIP(ip string, add bool) error {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return fmt.Errorf("bad pod address %q", ip)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: parsed, Mask: net.CIDRMask(32, 32)}, Scope: int(netlink.SCOPE_HOST)}
	if add {
		if err := netlink.AddrAdd(lo, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
		return nil
	}
	if err := netlink.AddrDel(lo, addr); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}
