package cri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// RunPlaceholder is the process of an image that maps to no binary: it
// listens on POD_IP (0.0.0.0 when unset) on every port of
// TRIAD_PLACEHOLDER_PORTS (comma-separated; the runtime sets it from the
// container's ports), answering 200 to any HTTP request so that probes
// pass, until ctx ends. args (the container's command and arguments) are
// ignored.
func RunPlaceholder(ctx context.Context, args []string) error {
	ip := os.Getenv("POD_IP")
	if ip == "" {
		ip = "0.0.0.0"
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})}
	errc := make(chan error, 1)
	for _, p := range strings.Split(os.Getenv("TRIAD_PLACEHOLDER_PORTS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, p))
		if err != nil {
			srv.Close()
			return fmt.Errorf("placeholder: listening on %s:%s: %w", ip, p, err)
		}
		go func() { errc <- srv.Serve(l) }()
	}
	fmt.Fprintf(os.Stderr, "placeholder for %q listening on %s ports [%s]\n", args, ip, os.Getenv("TRIAD_PLACEHOLDER_PORTS"))
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("placeholder: serving: %w", err)
	}
}

// Placeholder is the placeholder role of triad-cloud-local: RunPlaceholder
// until SIGTERM.
func Placeholder(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return RunPlaceholder(ctx, args)
}
