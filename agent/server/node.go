package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/triad-k8s/triad/agent/atomicfile"
	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/agent/manifests"
	"github.com/triad-k8s/triad/agent/nodecerts"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// backupDir is where an operation keeps the node files it replaced.
func (s *service) backupDir(operationID, kind string) string {
	return filepath.Join(s.cfg.StateDir, "backups", operationID, kind)
}

func (s *service) IssueNodeCertificates(ctx context.Context, req *agentv1.IssueNodeCertificatesRequest) (*agentv1.IssueNodeCertificatesResponse, error) {
	if len(req.GetIpAddresses()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "at least one IP address is required")
	}
	// The node's current advertise address is dropped from the SANs unless
	// the request names it again (as a migration does for the old IP, which
	// the load balancer takes over).
	var old string
	if path, err := s.pods.CurrentPath("kube-apiserver"); err == nil {
		old, _ = manifests.AdvertiseAddress(path)
	}
	issued, err := nodecerts.Reissue(nodecerts.Request{
		PKIDir: s.cfg.PKIDir, OldAddress: old, IPs: req.GetIpAddresses(), DNSNames: req.GetDnsNames(),
		BackupDir: s.backupDir(req.GetHeader().GetOperationId(), "pki"),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.IssueNodeCertificatesResponse{}
	for _, c := range issued {
		ic := &agentv1.IssuedCertificate{Path: c.Path, BackupPath: c.BackupPath, NotAfter: timestamppb.New(c.NotAfter), DnsNames: c.DNSNames}
		for _, ip := range c.IPs {
			ic.IpAddresses = append(ic.IpAddresses, ip.String())
		}
		resp.Certificates = append(resp.Certificates, ic)
	}
	s.cfg.Logger.InfoContext(ctx, "node certificates re-issued", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(), "ips", req.GetIpAddresses(), "dropped", old)
	return resp, nil
}

func (s *service) ReconfigureManifests(ctx context.Context, req *agentv1.ReconfigureManifestsRequest) (*agentv1.ReconfigureManifestsResponse, error) {
	m := req.GetMembership()
	etcdPath, err := s.pods.CurrentPath("etcd")
	if err != nil {
		return nil, toStatus(err)
	}
	apiPath, err := s.pods.CurrentPath("kube-apiserver")
	if err != nil {
		return nil, toStatus(err)
	}
	etcdPod, err := manifests.Read(etcdPath)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	apiPod, err := manifests.Read(apiPath)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	// Rewrite both in memory first: bad input changes neither file.
	if err := manifests.RewriteEtcd(etcdPod, manifests.Etcd{
		Name: m.GetMemberName(), AdvertiseAddress: req.GetAdvertiseAddress(),
		InitialCluster: m.GetInitialCluster(), InitialClusterState: req.GetInitialClusterState(),
		InitialClusterToken: m.GetClusterToken(),
	}); err != nil {
		return nil, toStatus(err)
	}
	if err := manifests.RewriteAPIServer(apiPod, manifests.APIServer{AdvertiseAddress: req.GetAdvertiseAddress(), EtcdServers: req.GetEtcdServers(), ShutdownDelay: req.GetApiserverShutdownDelay().AsDuration()}); err != nil {
		return nil, toStatus(err)
	}
	pods := []*manifests.Pod{etcdPod, apiPod}
	if v := req.GetKubernetesVersion(); v != "" {
		for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
			path, err := s.pods.CurrentPath(name)
			if err != nil {
				return nil, toStatus(err)
			}
			p, err := manifests.Read(path)
			if err != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
			}
			pods = append(pods, p)
		}
		for _, p := range pods[1:] {
			if err := manifests.SetVersion(p, v); err != nil {
				return nil, toStatus(err)
			}
		}
	}
	kubeconfigs, err := localKubeconfigEdits(s.kubeconfigDir(), req.GetAdvertiseAddress())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.ReconfigureManifestsResponse{}
	if req.GetEmptyEtcdDataDir() {
		// Before any manifest changes: a running etcd refuses it.
		prev, err := etcdsnap.Empty(s.cfg.EtcdDataDir, req.GetHeader().GetOperationId())
		if err != nil {
			return nil, toStatus(err)
		}
		resp.PreviousEtcdDataDir = prev
	}
	backup := s.backupDir(req.GetHeader().GetOperationId(), "manifests")
	for _, p := range pods {
		saved := filepath.Join(backup, filepath.Base(p.Path))
		if _, err := os.Stat(saved); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(saved, p.Original, 0o600); err != nil {
				return nil, status.Errorf(codes.Internal, "backing up %s: %v", p.Path, err)
			}
		}
		changed, err := p.Write()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "writing %s: %v", p.Path, err)
		}
		if changed {
			resp.ChangedFiles = append(resp.ChangedFiles, p.Path)
		}
	}
	for _, k := range kubeconfigs {
		saved := filepath.Join(backup, filepath.Base(k.path))
		if _, err := os.Stat(saved); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(saved, k.original, 0o600); err != nil {
				return nil, status.Errorf(codes.Internal, "backing up %s: %v", k.path, err)
			}
		}
		if err := atomicfile.Write(k.path, k.updated, 0o600); err != nil {
			return nil, status.Errorf(codes.Internal, "writing %s: %v", k.path, err)
		}
		resp.ChangedFiles = append(resp.ChangedFiles, k.path)
	}
	s.cfg.Logger.InfoContext(ctx, "manifests reconfigured", "cluster", s.cfg.Cluster, "op", req.GetHeader().GetOperationId(), "changed", fmt.Sprint(resp.ChangedFiles), "etcdDataMovedTo", resp.PreviousEtcdDataDir)
	return resp, nil
}
