package sidecar

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/version"
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
// reload.RestartWindow after a restart reload); and /status (what the agent
// holds, for `kubectl ramvault status`). Anyone on the Pod network can ask:
// none of them changes state or keeps anything per request, and none
// answers with a value, a token or a lease ID.
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
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		b, err := json.MarshalIndent(a.statusDocument(), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n'))
	})
	return mux
}

// statusDoc is what GET /status answers: the status file's document
// (status.go; its top-level fields and each secret's come through as they
// are) and, beside it, what the agent knows of each secret's lifecycle and
// of itself. Never a value, a token or a lease ID: errors pass redact.
type statusDoc struct {
	status
	Secrets map[string]secretStatus `json:"secrets"` // wins over status.Secrets
	Agent   agentStatus             `json:"agent"`
}

type secretStatus struct {
	statusEntry
	// Kind is kv-v1, kv-v2, leased (a lease the agent renews) or written
	// (method write: a certificate, say, re-issued before it ends).
	Kind string `json:"kind"`
	// Fetched is when Vault last answered the read (or write) with this
	// secret; the init container's fetch counts as when it wrote the file.
	Fetched time.Time `json:"fetched,omitzero"`
	// NextRefresh is when the agent acts next, at the latest (renewals and
	// re-issues come up to 10% earlier, jittered); Next says what it does:
	// renew, re-issue or re-read.
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	Next        string    `json:"next,omitempty"`
	Refresh     string    `json:"refresh,omitempty"` // a KV secret's re-read interval
	LastFetch   *eventDoc `json:"last_fetch,omitempty"`
	LastRenewal *eventDoc `json:"last_renewal,omitempty"`
	// Reload is the secret's reload (none, signal:SIGHUP, http:URL,
	// restart); LastReload the last reload of its kind in this agent.
	Reload     string    `json:"reload"`
	LastReload *eventDoc `json:"last_reload,omitempty"`
	// LastError is the secret's last failed fetch or renewal, also when a
	// later attempt succeeded.
	LastError *eventDoc `json:"last_error,omitempty"`
}

type agentStatus struct {
	Mode         string    `json:"mode"`               // the agent's: sidecar (init serves nothing)
	PodMode      string    `json:"pod_mode,omitempty"` // the injection's: native or classic
	Version      string    `json:"version"`
	TokenExpires time.Time `json:"token_expires,omitzero"`
	LastLogin    *eventDoc `json:"last_login,omitempty"`
	LastError    *eventDoc `json:"last_error,omitempty"` // of a login
}

type eventDoc struct {
	At     time.Time `json:"at"`
	Result string    `json:"result"` // success or failure
	Error  string    `json:"error,omitempty"`
}

// eventKey names what happened (fetch, renewal, reload, login, error) and
// to what (a secret's name, a reload's kind; "" for the login).
type eventKey struct{ kind, name string }

// event is the last time something happened and its error (value-free:
// the agent's errors never hold a secret value; redact takes out tokens
// and lease IDs Vault may echo).
type event struct {
	at  time.Time
	err string
}

func newEvent(at time.Time, err error) event {
	e := event{at: at}
	if err != nil {
		e.err = err.Error()
	}
	return e
}

// statusDocument builds the /status document from the state the agent holds;
// it changes nothing.
func (a *agent) statusDocument() statusDoc {
	st := a.currentStatus()
	events := a.metrics.events()
	stored := a.store.Secrets()
	tok := a.store.Token()
	secrets := map[string]string{} // lease IDs and paths, for redact
	for _, ss := range stored {
		secrets[ss.Path] = ss.LeaseID
	}
	doc := func(k eventKey) *eventDoc {
		e, ok := events[k]
		if !ok {
			return nil
		}
		d := &eventDoc{At: e.at, Result: "success"}
		if e.err != "" {
			d.Result, d.Error = "failure", redact(e.err, tok.Token, secrets)
		}
		return d
	}
	out := statusDoc{status: st, Secrets: map[string]secretStatus{}, Agent: agentStatus{
		Mode: a.cfg.Mode, PodMode: string(a.cfg.Spec.Mode), Version: version.Version, TokenExpires: tok.Expires,
		LastLogin: doc(eventKey{"login", ""}), LastError: doc(eventKey{"error", ""}),
	}}
	// One entry per dependency (a file's own secret is keyed by the file's
	// name; a template's by "<file>#<n>"), as the status file has them.
	for _, d := range a.graph.deps {
		ss, held := stored[d.name]
		e := secretStatus{statusEntry: st.Secrets[d.name], Kind: secretKind(d.method, ss.LeaseID, ss.Version),
			LastFetch: doc(eventKey{"fetch", d.name}), LastRenewal: doc(eventKey{"renewal", d.name}),
			LastError: doc(eventKey{"error", d.name})}
		if e.Path == "" {
			e.Path = d.path // not fetched yet
		}
		if len(d.files) > 0 {
			rl := a.cfg.Spec.ReloadFor(d.files[0].secret)
			e.Reload = rl.String()
			if rl.Kind != "" && rl.Kind != spec.ReloadNone {
				e.LastReload = doc(eventKey{"reload", string(rl.Kind)})
			}
		}
		if held {
			e.Fetched = ss.Written
			if f := e.LastFetch; f != nil && f.Result == "success" {
				e.Fetched = f.At
			}
			if ss.Expires.IsZero() || ss.LeaseDuration <= 0 {
				e.Next, e.NextRefresh, e.Refresh = "re-read", ss.Issued.Add(d.refresh), d.refresh.String()
			} else {
				renew, _ := a.plan(d, ss)
				e.Next, e.NextRefresh = "re-issue", ss.Issued.Add(ss.Expires.Sub(ss.Issued)*2/3)
				if renew {
					e.Next = "renew"
				}
			}
		}
		out.Secrets[d.name] = e
	}
	return out
}

// secretKind is how the agent keeps a secret: kv-v1, kv-v2, leased or
// written.
func secretKind(method, leaseID, version string) string {
	switch {
	case method == "write":
		return "written"
	case leaseID != "":
		return "leased"
	case version != "":
		return "kv-v2"
	}
	return "kv-v1"
}

// maxErrorLen bounds an error in the /status document.
const maxErrorLen = 512

// redact takes out of an error what must never leave the agent beyond its
// logs: the token, every lease ID held, and anything that looks like a
// lease ID of a secret's path (<path>/<id>: an earlier lease Vault echoed).
func redact(msg, token string, leases map[string]string) string {
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "[token]")
	}
	for path, id := range leases {
		if id != "" {
			msg = strings.ReplaceAll(msg, id, "[lease]")
		}
		prefix := path + "/"
		for i := 0; ; {
			j := strings.Index(msg[i:], prefix)
			if j < 0 {
				break
			}
			start := i + j + len(prefix)
			end := start
			for end < len(msg) && !strings.ContainsRune(" \t\n\"',;)", rune(msg[end])) {
				end++
			}
			if end == start {
				i = start
				continue
			}
			msg = msg[:start-1] + "/[lease]" + msg[end:]
			i = start - 1 + len("/[lease]")
		}
	}
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "…"
	}
	return msg
}
