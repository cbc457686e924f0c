package server_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/triad-k8s/triad/agent/etcd"
	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
	"github.com/triad-k8s/triad/agent/server"
	agentv1 "github.com/triad-k8s/triad/proto/triad/agent/v1"
)

// benchDB is one etcd member filled with TRIAD_BENCH_DB_MB (default 500) MiB
// of values, shared by the snapshot benchmarks of one run.
var benchDB struct {
	once     sync.Once
	endpoint string
	dir      string
	err      error
}

func benchEtcd(b *testing.B) string {
	b.Helper()
	benchDB.once.Do(func() {
		mb := 500
		if v, err := strconv.Atoi(os.Getenv("TRIAD_BENCH_DB_MB")); err == nil && v > 0 {
			mb = v
		}
		dir, err := os.MkdirTemp("", "triad-bench-etcd-")
		if err != nil {
			benchDB.err = err
			return
		}
		benchDB.dir = dir
		// The member outlives this benchmark: it is shared by the others.
		_, m := etcdtest.StartSingle(nopCleanup{b}, etcdtest.Member{Name: "bench", IP: "127.0.0.51", DataDir: filepath.Join(dir, "etcd")})
		benchDB.endpoint = m.ClientURL()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL()}, Logger: zap.NewNop()})
		if err != nil {
			benchDB.err = err
			return
		}
		defer cli.Close()
		value := make([]byte, 1<<20)
		start := time.Now()
		for i := range mb {
			rand.Read(value)
			if _, err := cli.Put(context.Background(), fmt.Sprintf("/bench/%05d", i), string(value)); err != nil {
				benchDB.err = err
				return
			}
		}
		fmt.Fprintf(os.Stderr, "bench: filled etcd with %d MiB in %s\n", mb, time.Since(start).Round(time.Second))
	})
	if benchDB.err != nil {
		b.Fatal(benchDB.err)
	}
	return benchDB.endpoint
}

// nopCleanup keeps the shared member running past the first benchmark.
type nopCleanup struct{ testing.TB }

func (nopCleanup) Cleanup(func()) {}

// BenchmarkSnapshot compares, on the same database in the same run, the
// agent's verified snapshot stream (client v3 snapshot API → agent → mTLS
// gRPC → a file on the caller's side) against etcd's own client v3
// snapshot.Save to a file. `make bench` prints the ratio.
func BenchmarkSnapshot(b *testing.B) {
	endpoint := benchEtcd(b)
	b.Run("client-v3-save", func(b *testing.B) {
		out := filepath.Join(b.TempDir(), "snap.db")
		var size int64
		for b.Loop() {
			if _, err := snapshot.SaveWithVersion(context.Background(), zap.NewNop(), clientv3.Config{Endpoints: []string{endpoint}}, out); err != nil {
				b.Fatal(err)
			}
			st, _ := os.Stat(out)
			size = st.Size()
			os.Remove(out)
		}
		b.SetBytes(size)
	})
	b.Run("agent-stream", func(b *testing.B) {
		p := newTestPKI(b)
		addr, _ := startAgentWith(b, server.Config{Cluster: cluster, NodeName: "bench", StateDir: b.TempDir(), TLS: p.agent, Etcd: etcd.Config{Endpoint: endpoint}})
		c := dial(b, addr, p.coordinator)
		out := filepath.Join(b.TempDir(), "snap.db")
		var size int64
		for b.Loop() {
			f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			stream, err := c.TakeSnapshot(context.Background(), &agentv1.TakeSnapshotRequest{Header: header(1)})
			if err != nil {
				b.Fatal(err)
			}
			size = 0
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					b.Fatal("no trailer")
				}
				if err != nil {
					b.Fatal(err)
				}
				if msg.GetTrailer() != nil {
					break
				}
				n, _ := f.Write(msg.GetData())
				size += int64(n)
			}
			f.Sync()
			f.Close()
			os.Remove(out)
		}
		b.SetBytes(size)
	})
}
