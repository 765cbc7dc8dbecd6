package sidecar

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// serve starts the health and metrics servers; the function it returns
// stops them.
func (a *agent) serve() (func(), error) {
	var servers []*http.Server
	start := func(addr string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		return nil
	}
	if err := start(a.cfg.HealthAddr, a.healthMux()); err != nil {
		return nil, err
	}
	if err := start(a.cfg.MetricsAddr, a.metrics); err != nil {
		return nil, err
	}
	return func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}, nil
}

// healthMux answers the kubelet's probes: /healthz, /readyz and /startup
// (200 once every secret was written), /restart-probe (fails for
// reload.RestartWindow after a restart reload). Anyone on the Pod network
// can ask: none of them changes state or keeps anything per request.
func (a *agent) healthMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	readyFn := func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "secrets not written yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("/readyz", readyFn)
	mux.HandleFunc("/startup", readyFn)
	mux.HandleFunc("/restart-probe", func(w http.ResponseWriter, r *http.Request) {
		if a.reloader.ShouldRestart() {
			http.Error(w, "secrets rotated: restart to load them", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
