package gate

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Handler is the load balancers' health check: 200 only when the gate is
// open AND ready (the local kube-apiserver answers /readyz) returns nil;
// 503 with the reason otherwise. A closed gate is never probed further, so
// a draining node stops getting traffic even while its apiserver is fine.
func Handler(g *Gate, ready func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if !g.State().Open {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, fmt.Sprintf("gate open, kube-apiserver not ready: %v", err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}
