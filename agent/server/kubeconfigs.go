package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/triad-k8s/triad/agent/manifests"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// kubeconfigDir is where kubeadm writes its kubeconfigs (/etc/kubernetes):
// the parent of the manifest directory, as kubeadm lays them out. Empty if
// the agent has no manifest directory.
func (s *service) kubeconfigDir() string {
	if s.cfg.ManifestDir == "" {
		return ""
	}
	return filepath.Dir(s.cfg.ManifestDir)
}

// kubeconfigServers reports the server URL of every cluster of each of
// manifests.KubeadmKubeconfigs in dir. A missing file is left out (not every node
// has every one: super-admin.conf is only on the first); one that cannot
// be read or parsed is reported with its error, for the coordinator to
// judge, rather than failing the call.
func kubeconfigServers(dir string) []*agentv1.Kubeconfig {
	if dir == "" {
		return nil
	}
	var out []*agentv1.Kubeconfig
	for _, name := range manifests.KubeadmKubeconfigs {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		k := &agentv1.Kubeconfig{Name: name}
		out = append(out, k)
		if err != nil {
			k.Error = err.Error()
			continue
		}
		cfg, err := clientcmd.Load(raw)
		if err != nil {
			k.Error = fmt.Sprintf("parsing %s: %v", name, err)
			continue
		}
		clusters := make([]string, 0, len(cfg.Clusters))
		for cname := range cfg.Clusters {
			clusters = append(clusters, cname)
		}
		slices.Sort(clusters)
		for _, cname := range clusters {
			k.Servers = append(k.Servers, cfg.Clusters[cname].Server)
		}
	}
	return out
}

// kubeconfigEdit is one kubeconfig rewritten in memory.
type kubeconfigEdit struct {
	path     string
	original []byte
	updated  []byte
}

// localKubeconfigEdits points every cluster of the local kubeconfigs in dir
// at advertise (the port kept): a clone of another node's disk names that
// node's address. It changes nothing on disk; a missing file is skipped
// (not every node runs every component), a corrupt one is an error.
func localKubeconfigEdits(dir, advertise string) ([]kubeconfigEdit, error) {
	if net.ParseIP(advertise) == nil {
		return nil, fmt.Errorf("%w: advertise address %q is not an IP", manifests.ErrInvalidArgument, advertise)
	}
	var edits []kubeconfigEdit
	for _, name := range manifests.LocalKubeconfigs {
		path := filepath.Join(dir, name)
		raw, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		cfg, err := clientcmd.Load(raw)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		changed := false
		for cname, c := range cfg.Clusters {
			u, err := url.Parse(c.Server)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("kubeconfig %s: cluster %s has server %q, not a URL", path, cname, c.Server)
			}
			port := u.Port()
			if port == "" {
				port = "443"
			}
			host := net.JoinHostPort(advertise, port)
			if u.Host != host {
				u.Host, changed = host, true
				c.Server = u.String()
			}
		}
		if !changed {
			continue
		}
		out, err := clientcmd.Write(*cfg)
		if err != nil {
			return nil, err
		}
		edits = append(edits, kubeconfigEdit{path: path, original: raw, updated: out})
	}
	return edits, nil
}
