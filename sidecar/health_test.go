package sidecar

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/sidecar/vault"
)

// GET /status tells each secret's kind, fetch, next refresh, renewal,
// reload and last error, and the agent's mode and version; never a value,
// a token or a lease ID, even one Vault echoed in an error; and asking
// changes nothing.
func TestStatusEndpointTellsTheLifecycleAndNoValueTokenOrLeaseID(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{
		dbSecret: "database/creds/app", "ramvault.io/secret-cfg": "secret/data/app/config", "ramvault.io/reload": "restart"})
	ta.vault.kv["secret/data/app/config"] = map[string]any{"password": "planted-kv"}
	ta.start(t)
	firstLease, _ := ta.store.Secret("db")
	// The first renewal is refused with an answer that echoes the lease ID:
	// the agent fetches a new secret and reloads the app.
	ta.vault.mu.Lock()
	ta.vault.fail = func(call string) error {
		if id, ok := strings.CutPrefix(call, "renew-lease "); ok {
			ta.vault.fail = nil
			return &vault.ResponseError{Method: "PUT", Path: "/v1/sys/leases/renew", StatusCode: http.StatusBadRequest, Errors: []string{"lease not found: " + id}}
		}
		return nil
	}
	ta.vault.mu.Unlock()
	ta.step(t)
	rotated := ta.clock.Now()

	srv := httptest.NewServer(ta.healthMux())
	t.Cleanup(srv.Close)
	stateBefore, filesBefore := maps.Clone(ta.state.files), maps.Clone(ta.files.files)
	resp, err := http.Post(srv.URL+"/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s, want 405", resp.Status)
	}
	resp, err = http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if !maps.EqualFunc(stateBefore, ta.state.files, func(a, b []byte) bool { return string(a) == string(b) }) ||
		!maps.EqualFunc(filesBefore, ta.files.files, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Error("asking /status changed the agent's state or files")
	}
	cur, _ := ta.store.Secret("db")
	for _, never := range []string{"planted-", "s.token-", firstLease.LeaseID, cur.LeaseID, "lease-1", "lease-2"} {
		if strings.Contains(string(body), never) {
			t.Errorf("/status holds %q:\n%s", never, body)
		}
	}

	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !doc.Ready || doc.Degraded || doc.Agent.Mode != "sidecar" || doc.Agent.Version == "" || doc.Agent.LastLogin == nil {
		t.Errorf("agent: ready %v degraded %v %+v", doc.Ready, doc.Degraded, doc.Agent)
	}
	db := doc.Secrets["db"]
	if db.Path != "database/creds/app" || db.Kind != "leased" || !db.Leased || db.Expires.IsZero() || db.Next != "renew" ||
		!db.NextRefresh.After(rotated) || !db.NextRefresh.Before(db.Expires) || !db.Fetched.Equal(rotated) {
		t.Errorf("db: %+v", db)
	}
	if r := db.LastRenewal; r == nil || r.Result != "failure" || !strings.Contains(r.Error, "lease not found: database/creds/app/[lease]") {
		t.Errorf("db's last renewal: %+v", r)
	}
	if e := db.LastError; e == nil || e.Error != db.LastRenewal.Error {
		t.Errorf("db's last error: %+v", e)
	}
	if r := db.LastReload; db.Reload != "restart" || r == nil || r.Result != "success" || !r.At.Equal(rotated) {
		t.Errorf("db's reload %q, last %+v", db.Reload, r)
	}
	cfg := doc.Secrets["cfg"]
	if cfg.Kind != "kv-v2" || cfg.Next != "re-read" || cfg.Refresh != "5m0s" || cfg.LastError != nil || cfg.LastRenewal != nil ||
		!cfg.NextRefresh.Equal(cfg.Fetched.Add(5*time.Minute)) {
		t.Errorf("cfg: %+v", cfg)
	}
}

func TestRedactTakesOutTheTokenAndLeaseIDs(t *testing.T) {
	leases := map[string]string{"database/creds/app": "database/creds/app/abc", "secret/data/x": ""}
	for _, c := range []struct{ in, want string }{
		{"vault PUT sys/leases/renew: 400: lease database/creds/app/old123 not found", "vault PUT sys/leases/renew: 400: lease database/creds/app/[lease] not found"},
		{"lease database/creds/app/abc; token hvs.T0K3N", "lease [lease]; token [token]"},
		{"fetch secret \"db\" from database/creds/app: vault GET /v1/database/creds/app: 403", "fetch secret \"db\" from database/creds/app: vault GET /v1/database/creds/app: 403"},
		{"secret/data/x: no secret at this path", "secret/data/x: no secret at this path"},
	} {
		if got := redact(c.in, "hvs.T0K3N", leases); got != c.want {
			t.Errorf("redact(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}
