package local

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// The local cloud's network (DESIGN §5). Each VM is its own host: the
// supervisor of a VM is started in new network, mount and UTS namespaces,
// and its only link to the world is eth0, one end of a veth pair whose
// other end is on the cloud's bridge. The bridge, in the host's network
// namespace, carries two pools:
//
//   - private addresses (<PrivatePrefix>.1-253/24) for VMs; the bridge's own
//     <PrivatePrefix>.254 is the VMs' default gateway;
//   - public addresses (<PublicPrefix>.x), and private addresses taken over
//     by load balancers, added to the bridge as /32s while a load balancer
//     or an address forwarder listens on them.
//
// So the host reaches every VM, load balancer and public address, and every
// VM reaches the others, the load balancers and the public addresses. IPv4
// forwarding is off on the bridge: a packet from a VM to any other address
// is dropped, never routed off the machine. The default pools come from
// 198.18.0.0/15 (RFC 2544, reserved for benchmarking networks), one /24 of
// each half per cloud.

// Network names the bridge and pools of one local cloud.
type Network struct {
	Bridge        string `json:"bridge"`
	PrivatePrefix string `json:"privatePrefix"`
	PublicPrefix  string `json:"publicPrefix"`
}

func (n Network) gateway() string { return n.PrivatePrefix + ".254" }

// subnetsLock serialises choosing a /24 among the local clouds of this
// machine (concurrent tests create several at once).
const subnetsLock = "/run/lock/triad-localcloud-subnets.lock"

// bridgeName is the bridge of the cloud in stateDir (15 bytes at most).
func bridgeName(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return fmt.Sprintf("triad-%x", sum[:4])
}

// vethName is the host end of instance id's veth pair.
func vethName(stateDir, id string) string {
	sum := sha256.Sum256([]byte(stateDir + "/" + id))
	return fmt.Sprintf("tv%x", sum[:6])
}

// vmMAC is instance id's eth0 address: fixed for the instance, as a cloud
// VM's network interface keeps its MAC across reboots, and another
// instance's, as a new VM gets a new interface even on a reused address.
func vmMAC(stateDir, id string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac/" + stateDir + "/" + id))
	return net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]} // locally administered, unicast
}

// checkHost says clearly what this machine lacks for the local cloud.
func checkHost() error {
	if os.Geteuid() != 0 {
		return errors.New("the local cloud needs root: each VM gets its own network, mount and UTS namespaces, a veth pair on a bridge and overlay mounts (run as root, or use another cloud plugin)")
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !strings.Contains(string(fss), "\toverlay\n") {
		return errors.New("the local cloud needs the overlay filesystem (modprobe overlay): a VM's root disk is an overlay on the host's /etc and /var")
	}
	for _, ns := range []string{"net", "mnt", "uts"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fmt.Errorf("the local cloud needs %s namespaces (kernel support): %w", ns, err)
		}
	}
	return nil
}

// chooseNetwork picks pools no interface of this machine uses, and creates
// the bridge holding them (under a machine-wide lock, so two clouds never
// pick the same one).
func chooseNetwork(stateDir string) (Network, error) {
	n := Network{Bridge: bridgeName(stateDir)}
	unlock, err := lockFile(subnetsLock)
	if err != nil {
		return n, err
	}
	defer unlock()
	used := map[string]bool{}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return n, fmt.Errorf("listing this machine's addresses: %w", err)
	}
	for _, a := range addrs {
		ip := a.IP.To4()
		used[fmt.Sprintf("%d.%d.%d", ip[0], ip[1], ip[2])] = true
	}
	sum := sha256.Sum256([]byte(stateDir))
	start := int(sum[5])
	for i := 0; i < 256; i++ {
		third := (start + i) % 256
		priv, pub := fmt.Sprintf("198.18.%d", third), fmt.Sprintf("198.19.%d", third)
		if used[priv] || used[pub] {
			continue
		}
		n.PrivatePrefix, n.PublicPrefix = priv, pub
		return n, ensureBridge(n)
	}
	return n, errors.New("every /24 of 198.18.0.0/15 is in use on this machine: run 'triad local down' for clouds no longer needed")
}

func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// ensureBridge creates the cloud's bridge if it is missing (first use, or
// after the machine rebooted) and makes sure it forwards nothing.
func ensureBridge(n Network) error {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		if !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("creating bridge %s: %w", n.Bridge, err)
		}
		if br, err = netlink.LinkByName(n.Bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
	}
	// No IPv6 on the bridge (no link-local chatter, nothing to route).
	os.WriteFile("/proc/sys/net/ipv6/conf/"+n.Bridge+"/disable_ipv6", []byte("1"), 0o644)
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.Bridge+"/forwarding", []byte("0"), 0o644); err != nil {
		return fmt.Errorf("turning forwarding off on %s: %w", n.Bridge, err)
	}
	gw, _ := netlink.ParseAddr(n.gateway() + "/24")
	if err := netlink.AddrAdd(br, gw); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("adding %s to %s: %w", n.gateway(), n.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing %s up: %w", n.Bridge, err)
	}
	return nil
}

// deleteBridge removes the bridge; with it go every address on it and the
// host ends of the veth pairs still attached.
func deleteBridge(n Network) error {
	if n.Bridge == "" {
		return nil
	}
	br, err := netlink.LinkByName(n.Bridge)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return err
	}
	return netlink.LinkDel(br)
}

// attachVM plugs the network namespace of the process pid (a VM's new
// supervisor) into the bridge: the host end joins the bridge, the other
// end appears in the VM as eth0, which the supervisor configures.
func attachVM(n Network, host string, mac net.HardwareAddr, pid int) error {
	if err := ensureBridge(n); err != nil {
		return err
	}
	if old, err := netlink.LinkByName(host); err == nil {
		netlink.LinkDel(old) // a previous boot's, if its namespace outlived it
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerHardwareAddr: mac, PeerNamespace: netlink.NsPid(pid)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s for the VM: %w", host, err)
	}
	link, err := netlink.LinkByName(host)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

// setupVMNetwork runs inside a VM's network namespace: it waits for eth0,
// gives it the VM's address, brings lo up and routes through the bridge.
func setupVMNetwork(ip, gateway string) error {
	var eth0 netlink.Link
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			eth0 = l
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("eth0 never appeared in the VM: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	addr, err := netlink.ParseAddr(ip + "/24")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(eth0, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("adding %s to eth0: %w", ip, err)
	}
	if err := netlink.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bringing eth0 up: %w", err)
	}
	// A cloud's network learns at once where an address went (the address
	// of a deleted VM is handed to the next one): announce it, so that the
	// host's and the other VMs' neighbour entries for a reused address stop
	// naming an interface that is gone.
	if err := announce(eth0.Attrs().Index, eth0.Attrs().HardwareAddr, net.ParseIP(ip)); err != nil {
		return fmt.Errorf("announcing %s: %w", ip, err)
	}
	gw := net.ParseIP(gateway)
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("default route via %s: %w", gateway, err)
	}
	// As on a kubeadm node (its preflight checks it); it forwards only
	// between the VM's own interfaces, and the bridge forwards nothing.
	os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	return nil
}

// announce sends gratuitous ARP requests for ip from the interface with
// index ifindex once its link has a carrier (the host end of the veth is
// up), as a booting Linux VM's network does.
func announce(ifindex int, mac net.HardwareAddr, ip net.IP) error {
	ip4 := ip.To4()
	if ip4 == nil || len(mac) != 6 {
		return fmt.Errorf("no IPv4 address or MAC to announce (%v, %v)", ip, mac)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := netlink.LinkByIndex(ifindex)
		if err != nil {
			return err
		}
		if l.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("eth0 has no carrier after 10s (state %s)", l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ARP)))
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	broadcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	frame := append(append([]byte{}, broadcast...), mac...)
	frame = append(frame, 0x08, 0x06, // ARP
		0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01) // Ethernet, IPv4, request
	frame = append(frame, mac...)
	frame = append(frame, ip4...)
	frame = append(frame, 0, 0, 0, 0, 0, 0)
	frame = append(frame, ip4...)
	to := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], broadcast)
	for i := range 3 {
		if err := syscall.Sendto(fd, frame, 0, to); err != nil {
			return err
		}
		if i < 2 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// addHostAddress puts ip on the bridge as a /32 so a load balancer or a
// forwarder can listen on it; removeHostAddress takes it off.
func addHostAddress(n Network, ip string) error {
	if err := ensureBridge(n); err != nil {
		return err
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(ip + "/32")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(br, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("adding %s to %s: %w", ip, n.Bridge, err)
	}
	// The address is usable once the kernel lists it (no DAD for IPv4).
	return nil
}

func removeHostAddress(n Network, ip string) {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return
	}
	if a, err := netlink.ParseAddr(ip + "/32"); err == nil {
		netlink.AddrDel(br, a)
	}
}

// inPool reports whether ip belongs to a pool of prefix (three octets).
func inPool(prefix, ip string) bool {
	rest, ok := strings.CutPrefix(ip, prefix+".")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(rest)
	return err == nil && n >= 1 && n <= 253
}
