// Package testkube runs a real kube-apiserver, on an embedded etcd, for unit
// tests that talk to the Kubernetes API: what the API server validates,
// versions and refuses is then the real thing, not a fake clientset's guess.
//
// It owns the API server process, its etcd and their files, all under the
// test's temporary directory. It runs no kube-controller-manager and no
// kubelet: nothing reconciles, garbage-collects or reports status, so a test
// sets the status it needs itself. It is imported from _test.go files only.
package testkube

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/triad-k8s/triad/agent/etcd/etcdtest"
)

// EnvBinDir names the environment variable holding the directory of the
// Kubernetes binaries (`make unit` sets it to the pinned build's cache).
const EnvBinDir = "TRIAD_K8S_BIN"

// readyTimeout bounds the API server's start: under -race, with other test
// binaries on two cores, it takes a few seconds to tens of seconds.
const readyTimeout = 60 * time.Second

// Cluster is a running kube-apiserver, stopped when the test that started it
// ends.
type Cluster struct {
	// Client acts as a member of system:masters, which RBAC lets do
	// anything.
	Client kubernetes.Interface
	// Config is Client's configuration, for other clients.
	Config *rest.Config
}

// Start runs a kube-apiserver on a new embedded etcd, both on loopback, and
// waits until it is ready and has created its system namespaces. It skips
// the test when TRIAD_K8S_BIN is unset. Start one per test function and
// share it among its subtests: each costs seconds of CPU.
func Start(t testing.TB) *Cluster {
	t.Helper()
	binDir := os.Getenv(EnvBinDir)
	if binDir == "" {
		t.Skipf("%s is not set: run the tests with `make unit`, which builds kube-apiserver and sets it", EnvBinDir)
	}
	bin := filepath.Join(binDir, "kube-apiserver")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s has no kube-apiserver (`make k8s-binaries` builds it): %v", EnvBinDir, binDir, err)
	}
	begin := time.Now()
	dir := t.TempDir()

	_, etcd := etcdtest.StartSingle(t, etcdtest.Member{Name: "testkube", IP: "127.0.0.1", DataDir: filepath.Join(dir, "etcd")})

	token := randomHex(t)
	saKey := filepath.Join(dir, "sa.key")
	writeServiceAccountKey(t, saKey)
	tokens := filepath.Join(dir, "tokens.csv")
	// token,user,uid,"groups"
	writeFile(t, tokens, token+`,testkube-admin,testkube-admin,"system:masters"`+"\n")
	certDir := filepath.Join(dir, "certs")
	port := freePort(t)

	logPath := filepath.Join(dir, "kube-apiserver.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		// Without TLS files the API server self-signs a CA and a
		// serving certificate for localhost and 127.0.0.1 into cert-dir.
		"--cert-dir="+certDir,
		"--etcd-servers="+etcd.ClientURL(),
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/12",
		// The endpoints of the kubernetes Service may not be loopback
		// addresses; there is no one in the test to reach it through.
		"--endpoint-reconciler-type=none",
		// No kube-controller-manager creates the default ServiceAccount
		// of a namespace, which this plugin requires of every pod.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	)
	// An explicit, empty environment: the API server needs none, and one
	// inherited from the test could change its behaviour (KUBECONFIG,
	// proxies).
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with the test binary, should it die before its cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stop(t, cmd, exited)
		logFile.Close()
	})

	cfg := &rest.Config{
		Host:        "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		BearerToken: token,
		// Fast enough for tests on two busy cores; client-go's default
		// of 5 QPS would make the tests wait on the client.
		QPS: 200, Burst: 400,
		Timeout: 30 * time.Second,
	}
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	var client kubernetes.Interface
	var last error
	for {
		if client == nil {
			client, last = clientTrusting(cfg, filepath.Join(certDir, "apiserver.crt"))
		}
		if client != nil {
			last = ready(ctx, client)
			if last == nil {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("kube-apiserver exited before it was ready (%v); its log:\n%s", waitErr, tail(logPath))
		case <-ctx.Done():
			t.Fatalf("kube-apiserver not ready after %s (last: %v); its log:\n%s", readyTimeout, last, tail(logPath))
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("kube-apiserver %s ready on %s in %s", bin, cfg.Host, time.Since(begin).Round(time.Millisecond))
	return &Cluster{Client: client, Config: cfg}
}

// clientTrusting returns a client of cfg that trusts the certificate the API
// server wrote to certFile, once it has: the file holds the serving
// certificate followed by the CA that signed it.
func clientTrusting(cfg *rest.Config, certFile string) (kubernetes.Interface, error) {
	ca, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("waiting for the serving certificate: %w", err)
	}
	cfg.CAData = ca
	return kubernetes.NewForConfig(cfg)
}

// ready reports why the API server is not ready yet: /readyz, then the
// namespaces its system-namespaces controller creates shortly after, which
// tests write to (kube-node-lease holds the kubelets' Leases).
func ready(ctx context.Context, client kubernetes.Interface) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx); err != nil {
		return fmt.Errorf("/readyz: %w: %s", err, body)
	}
	for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, "kube-node-lease"} {
		if _, err := client.CoreV1().Namespaces().Get(rctx, ns, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	return nil
}

// stop ends the API server gracefully, or kills it after a few seconds.
func stop(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("stopping kube-apiserver: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("kube-apiserver still running 10s after SIGTERM: killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
}

// writeServiceAccountKey writes an RSA key to path, which serves both as
// the key that signs service-account tokens and the one that verifies them.
func writeServiceAccountKey(t testing.TB, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port on 127.0.0.1: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail is the end of the API server's log, for a failure message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const limit = 8 << 10
	if len(b) > limit {
		b = append([]byte("...\n"), b[len(b)-limit:]...)
	}
	return string(b)
}
