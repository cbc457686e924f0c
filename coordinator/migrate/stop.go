package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/triad-k8s/triad/agent/etcdsnap"
	"github.com/triad-k8s/triad/cloudplugins/sdk"
	"github.com/triad-k8s/triad/coordinator/controlplane"
	"github.com/triad-k8s/triad/coordinator/engine"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// Phase 1: stop the single node and capture it (1.1 to 1.4).

func (e *Env) stopControlPlane(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	stop := func(names ...string) error {
		return e.StopPods(ctx, e.originalAgent(s), header(op), names)
	}
	// The controllers first, while kube-apiserver still answers: they
	// release their leader leases and exit at once, where without an
	// apiserver they would hang until killed at the end of their grace
	// period.
	if err := stop("kube-controller-manager", "kube-scheduler"); err != nil {
		return err
	}
	if s.StoppedAt == nil {
		s.StoppedAt = now()
		if err := op.Save(); err != nil {
			return err
		}
	}
	return stop("kube-apiserver")
}

// revisionStable checks that nothing writes to etcd any more.
func (e *Env) revisionStable(ctx context.Context, op *engine.Op[State]) error {
	endpoint := e.originalAgent(op.State)
	first, err := e.EtcdStatus(ctx, endpoint)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	second, err := e.EtcdStatus(ctx, endpoint)
	if err != nil {
		return err
	}
	if first.GetRevision() != second.GetRevision() {
		return fmt.Errorf("etcd revision still moving (%d, then %d a second later) with kube-apiserver stopped: something else writes to etcd", first.GetRevision(), second.GetRevision())
	}
	op.State.StableRevision = second.GetRevision()
	op.Logf("etcd revision stable at %d", second.GetRevision())
	return nil
}

func (e *Env) startPods(ctx context.Context, op *engine.Op[State], endpoint string, names []string) error {
	return e.StartPods(ctx, endpoint, header(op), names, false)
}

// startOriginalPods brings the original node back: its VM is started if it
// is not running (a host that crashed mid-migration), then every static
// pod, and kube-apiserver must be ready.
func (e *Env) startOriginalPods(ctx context.Context, op *engine.Op[State]) error {
	inst, err := controlplane.CloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, op.State.Original.InstanceID) })
	if err != nil {
		return err
	}
	if inst.State != sdk.InstanceRunning && inst.PrivateIP != "" {
		op.Logf("instance %s is %s; starting it", inst.ID, inst.State)
		if _, err := controlplane.CloudRetry(ctx, "start instance", func() (sdk.Instance, error) { return e.Cloud.StartInstance(ctx, inst.ID) }); err != nil {
			return err
		}
	}
	if err := e.startPods(ctx, op, e.originalAgent(op.State), controlplane.ControlPlanePods); err != nil {
		return err
	}
	return e.WaitAPIServerReady(ctx, e.originalAgent(op.State))
}

func (e *Env) snapshotEtcd(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	var trailer etcdsnap.Trailer
	err := e.CallAgent(ctx, e.originalAgent(s), "take snapshot", func(ctx context.Context, c agentv1.AgentServiceClient) error {
		stream, err := c.TakeSnapshot(ctx, &agentv1.TakeSnapshotRequest{Header: header(op)})
		if err != nil {
			return err
		}
		trailer, err = e.Snapshots.Receive(op.Record.ID, func() ([]byte, *etcdsnap.Trailer, error) {
			msg, err := stream.Recv()
			if err == io.EOF {
				return nil, nil, errors.New("stream ended without a trailer")
			}
			if err != nil {
				return nil, nil, err
			}
			if t := msg.GetTrailer(); t != nil {
				return nil, &etcdsnap.Trailer{SHA256: t.GetSha256(), Size: t.GetSizeBytes(), Revision: t.GetRevision(), EtcdVersion: t.GetEtcdVersion()}, nil
			}
			return msg.GetData(), nil, nil
		})
		return err
	})
	if err != nil {
		return err
	}
	if s.StableRevision != 0 && trailer.Revision != s.StableRevision {
		return fmt.Errorf("snapshot holds revision %d, but etcd was stable at %d", trailer.Revision, s.StableRevision)
	}
	s.Snapshot = &Snapshot{ID: op.Record.ID, Path: e.Snapshots.Path(op.Record.ID), SHA256: trailer.SHA256, SizeBytes: trailer.Size, Revision: trailer.Revision, EtcdVersion: trailer.EtcdVersion}
	op.Logf("snapshot %s: %d bytes, revision %d, sha256 %s", s.Snapshot.Path, trailer.Size, trailer.Revision, trailer.SHA256)
	return nil
}

func (e *Env) stopVM(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	inst, err := controlplane.CloudRetry(ctx, "get instance", func() (sdk.Instance, error) { return e.Cloud.GetInstance(ctx, s.Original.InstanceID) })
	if err != nil {
		return err
	}
	if inst.State == sdk.InstanceRunning {
		// etcd first, cleanly, through the agent: the disk snapshot must
		// hold a closed database.
		if err := e.StopPods(ctx, e.originalAgent(s), header(op), []string{"etcd"}); err != nil {
			return err
		}
		if _, err := controlplane.CloudRetry(ctx, "stop instance", func() (sdk.Instance, error) { return e.Cloud.StopInstance(ctx, s.Original.InstanceID) }); err != nil {
			return err
		}
	}
	if err := controlplane.Poll(ctx, e.Options.ReadyTimeout, time.Second, "instance "+s.Original.InstanceID+" stopped", func() (bool, error) {
		inst, err := e.Cloud.GetInstance(ctx, s.Original.InstanceID)
		return err == nil && inst.State == sdk.InstanceStopped, err
	}); err != nil {
		return err
	}
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		if _, err := controlplane.CloudRetry(ctx, "release address "+id, func() (sdk.Address, error) { return e.Cloud.ReleaseAddress(ctx, id) }); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) vmStopped(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		a, err := e.Cloud.GetAddress(ctx, id)
		if err != nil {
			return err
		}
		if a.InstanceID != "" || a.LoadBalancerID != "" {
			return fmt.Errorf("address %s still held by %s%s", a.IP, a.InstanceID, a.LoadBalancerID)
		}
	}
	return nil
}

// restartOriginal undoes 1.3: the addresses go back to the VM (a load
// balancer holding one is an error: its undo runs first), the VM starts,
// and the agent starts every static pod.
func (e *Env) restartOriginal(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	for _, id := range []string{s.PrivateAddressID, s.PublicAddressID} {
		a, err := controlplane.CloudRetry(ctx, "get address", func() (sdk.Address, error) { return e.Cloud.GetAddress(ctx, id) })
		if err != nil {
			return err
		}
		switch {
		case a.InstanceID == s.Original.InstanceID:
		case a.InstanceID != "" || a.LoadBalancerID != "":
			return fmt.Errorf("address %s is held by %s%s, not by the original instance %s", a.IP, a.InstanceID, a.LoadBalancerID, s.Original.InstanceID)
		default:
			if _, err := controlplane.CloudRetry(ctx, "attach address "+a.IP, func() (sdk.Address, error) { return e.Cloud.AttachAddress(ctx, id, s.Original.InstanceID) }); err != nil {
				return err
			}
		}
	}
	if _, err := controlplane.CloudRetry(ctx, "start instance", func() (sdk.Instance, error) { return e.Cloud.StartInstance(ctx, s.Original.InstanceID) }); err != nil {
		return err
	}
	return e.startOriginalPods(ctx, op)
}

func (e *Env) snapshotDisk(ctx context.Context, op *engine.Op[State]) error {
	s := op.State
	snap, err := controlplane.CloudRetry(ctx, "create disk snapshot", func() (sdk.DiskSnapshot, error) {
		return e.Cloud.CreateDiskSnapshot(ctx, sdk.CreateDiskSnapshotRequest{IdempotencyToken: op.Record.ID + "-disk", InstanceID: s.Original.InstanceID, Labels: s.labels(op.Record.ID)})
	})
	if err != nil {
		return err
	}
	s.DiskSnapshotID = snap.ID
	if err := op.Save(); err != nil {
		return err
	}
	return controlplane.Poll(ctx, e.Options.ReadyTimeout, time.Second, "disk snapshot "+snap.ID+" ready", func() (bool, error) {
		snap, err := e.Cloud.GetDiskSnapshot(ctx, snap.ID)
		if err == nil && snap.State == sdk.DiskSnapshotError {
			return false, fmt.Errorf("disk snapshot %s failed", snap.ID)
		}
		return err == nil && snap.State == sdk.DiskSnapshotReady, err
	})
}

func (e *Env) deleteDiskSnapshot(ctx context.Context, op *engine.Op[State]) error {
	list := func() ([]sdk.DiskSnapshot, error) {
		return e.Cloud.ListDiskSnapshots(ctx, op.State.labels(op.Record.ID))
	}
	if err := deleteCreated(ctx, "disk snapshot", []string{op.State.DiskSnapshotID}, list,
		func(s sdk.DiskSnapshot) string { return s.ID }, e.Cloud.DeleteDiskSnapshot); err != nil {
		return err
	}
	op.State.DiskSnapshotID = ""
	return nil
}

// deleteCreated deletes what a step created: the ids the journal holds and
// whatever the cloud lists under the operation's labels (created just before
// a crash, before its id was journaled). Already gone is not an error.
func deleteCreated[T any](ctx context.Context, kind string, known []string, list func() ([]T, error), idOf func(T) string, del func(context.Context, string) error) error {
	found, err := controlplane.CloudRetry(ctx, "list "+kind+"s", list)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, id := range known {
		ids[id] = id != ""
	}
	for _, r := range found {
		ids[idOf(r)] = true
	}
	for id, ok := range ids {
		if !ok {
			continue
		}
		if _, err := controlplane.CloudRetry(ctx, "delete "+kind+" "+id, func() (struct{}, error) { return struct{}{}, del(ctx, id) }); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	return nil
}
