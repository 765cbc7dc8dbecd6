package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/ramvault/ramvault/pkg/tmpfs"
	"github.com/ramvault/ramvault/sidecar/reload"
	"github.com/ramvault/ramvault/sidecar/state"
)

// The tests of files rendered from several Vault requests: one request per
// distinct dependency of the Pod, its own lifecycle, and files written as
// one set with one reload.

// countReloads makes every reload of the agent counted (reload restart: no
// process to signal, no server to call).
func (ta *testAgent) countReloads() *atomic.Int32 {
	var n atomic.Int32
	ta.reloader = reload.New(reload.Options{Log: ta.log, Clock: ta.clock, Observe: func(string, error) { n.Add(1) }})
	return &n
}

func (ta *testAgent) statusFile(t *testing.T) status {
	t.Helper()
	var st status
	if err := json.Unmarshal([]byte(ta.files.content(".ramvault-status.json")), &st); err != nil {
		t.Fatalf("status file: %v", err)
	}
	return st
}

const issue = `"pki/issue/web" "common_name=web.test"`

func TestThreePKIFilesComeFromOneIssuanceAndAreReissuedTogether(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{
		"ramvault.io/template-tls.crt":      `{{ with pkiCert ` + issue + ` }}{{ .Cert }}{{ end }}`,
		"ramvault.io/template-tls.key":      `{{ with secret ` + issue + ` }}{{ .Data.private_key }}{{ end }}`,
		"ramvault.io/template-ca.crt":       `{{ with pkiCert ` + issue + ` }}{{ .CA }}{{ end }}`,
		"ramvault.io/template-keystore.p12": `{{ with pkiCert ` + issue + ` }}{{ pkcs12 .Cert .Key "changeit" .CA }}{{ end }}`,
		"ramvault.io/reload":                "restart",
	})
	ta.vault.tokenTTL = 24 * time.Hour // the token's loop stays asleep
	ta.vault.pkiTTL = time.Hour
	reloads := ta.countReloads()
	ta.start(t)

	check := func(when string) *x509.Certificate {
		t.Helper()
		crt, key, ca := ta.files.content("tls.crt"), ta.files.content("tls.key"), ta.files.content("ca.crt")
		pair, err := tls.X509KeyPair([]byte(crt), []byte(key))
		if err != nil {
			t.Fatalf("%s: the key does not belong to the certificate: %v", when, err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(ca)) {
			t.Fatalf("%s: ca.crt holds no certificate", when)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: ta.clock.Now(), DNSName: "web.test"}); err != nil {
			t.Fatalf("%s: the certificate does not chain to ca.crt: %v", when, err)
		}
		_, p12cert, _, err := pkcs12.DecodeChain([]byte(ta.files.content("keystore.p12")), "changeit")
		if err != nil || !p12cert.Equal(leaf) {
			t.Fatalf("%s: the keystore (binary, as written) does not hold the same certificate: %v", when, err)
		}
		return leaf
	}
	first := check("first write")
	if n := ta.vault.count("get pki/issue/web"); n != 1 {
		t.Fatalf("%d issuances for four files, want 1", n)
	}
	st := ta.statusFile(t)
	deps := st.Files["tls.key"].Dependencies
	if len(deps) != 1 || deps[0].Path != "pki/issue/web" || deps[0].Kind != "pkiCert" || deps[0].Method != "write" ||
		!deps[0].Expires.Equal(first.NotAfter) || deps[0].Next.IsZero() {
		t.Errorf("status of tls.key: %+v", deps)
	}

	d := ta.step(t)
	if d < 36*time.Minute || d > 40*time.Minute {
		t.Errorf("re-issued after %s; want about 2/3 of the certificate's 1h life", d)
	}
	if n := ta.vault.count("get pki/issue/web"); n != 2 {
		t.Fatalf("%d issuances after the re-issue, want 2", n)
	}
	second := check("re-issue")
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("the files still hold the first certificate")
	}
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt", "keystore.p12"} {
		if n := ta.files.writesOf(f); n != 2 && f != "ca.crt" {
			t.Errorf("%s written %d times, want 2", f, n)
		}
	}
	if n := ta.files.writesOf("ca.crt"); n != 1 {
		t.Errorf("ca.crt written %d times; the CA did not change, so once", n)
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads for one re-issue of four files, want 1", n)
	}
	status := ta.files.content(".ramvault-status.json")
	if strings.Contains(status, "BEGIN") || strings.Contains(status, "s.token-") {
		t.Errorf("the status file holds a value:\n%s", status)
	}
}

func TestOneFileOfKVAndDatabaseCredentialsKeepsItsKVValuesAtReissue(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{
		"ramvault.io/template-dsn": `{{ with secret "secret/app" }}host={{ .Data.data.host }} v{{ .Data.metadata.version }}{{ end }}` +
			`{{ with secret "database/creds/app" }} user={{ .Data.username }} password={{ .Data.password }}{{ end }}`,
		"ramvault.io/reload": "restart",
	})
	ta.vault.putKV2("secret/app", map[string]any{"host": "db.internal"})
	ta.vault.tokenTTL = 24 * time.Hour
	ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, 100*time.Second
	reloads := ta.countReloads()
	ta.start(t)
	if got, want := ta.files.content("dsn"), "host=db.internal v1 user=u1 password=planted-1"; got != want {
		t.Fatalf("dsn = %q, want %q (KV v2 as consul-template: .Data.data, .Data.metadata)", got, want)
	}
	for ta.vault.count("get database/creds/app") < 2 {
		ta.step(t)
		if ta.clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) > 10*time.Minute {
			t.Fatal("the credentials were never re-issued")
		}
	}
	if got, want := ta.files.content("dsn"), "host=db.internal v1 user=u2 password=planted-2"; got != want {
		t.Errorf("after the re-issue dsn = %q, want %q", got, want)
	}
	if n := ta.vault.count("get secret/app"); n != 1 {
		t.Errorf("the KV secret read %d times; a re-issue of the credentials needs no new read", n)
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}

// The same request in several files, by path and arguments, by ref, or as
// a one-secret file and a template's read of the same KV v2 secret with
// and without data/, is one request.
func TestTheSameDependencyInSeveralFilesIsOneRequest(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{
		"ramvault.io/secret-db":       "database/creds/app",
		"ramvault.io/template-dsn":    `{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}`,
		"ramvault.io/template-user":   `{{ with ref "db" }}{{ .Data.username }}{{ end }}`,
		"ramvault.io/secret-cfg":      "secret/data/app",
		"ramvault.io/format-cfg":      "dotenv",
		"ramvault.io/template-env":    `{{ with secret "secret/app" }}{{ .Data.data.host }}{{ end }}`,
		"ramvault.io/template-ref":    `{{ with ref "cfg" }}{{ .Data.host }}{{ end }}`,
		"ramvault.io/template-static": `no secret here`,
	})
	ta.vault.putKV2("secret/app", map[string]any{"host": "db.internal"})
	ta.start(t)
	if n := ta.vault.count("get database/creds/app"); n != 1 {
		t.Errorf("%d requests for database/creds/app in three files, want 1", n)
	}
	if n := ta.vault.count("get secret/"); n != 1 {
		t.Errorf("%d reads of secret/app and secret/data/app on a KV v2 mount, want 1", n)
	}
	if got := ta.files.content("dsn") + " " + ta.files.content("user"); got != "u1 u1" || !strings.Contains(ta.files.content("db"), `"u1"`) {
		t.Errorf("dsn, user = %q; db = %q: want the one lease's username everywhere", got, ta.files.content("db"))
	}
	if got := ta.files.content("env") + " " + ta.files.content("ref") + " " + ta.files.content("cfg"); got != "db.internal db.internal HOST=\"db.internal\"\n" {
		t.Errorf("env, ref, cfg = %q", got)
	}
	if got := ta.files.content("static"); got != "no secret here" {
		t.Errorf("a template without dependencies wrote %q", got)
	}
	if n := len(ta.graph.deps); n != 2 {
		t.Errorf("%d dependencies, want 2", n)
	}
}

// A change whose render fails writes none of its files: the old set stays,
// the status says degraded, and the retry writes the whole new set.
func TestAFailingRenderOrFetchLeavesEveryFileOfTheSetAsItWas(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{
		"ramvault.io/template-a": `{{ with secret "secret/app" }}{{ .Data.data.host }}{{ end }} {{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}`,
		"ramvault.io/template-b": `{{ with secret "secret/app" }}{{ .Data.data.port }}{{ end }}`,
		"ramvault.io/refresh-a":  "1m",
		"ramvault.io/refresh-b":  "1m",
		"ramvault.io/reload":     "restart",
	})
	ta.vault.putKV2("secret/app", map[string]any{"host": "h1", "port": "1"})
	ta.vault.tokenTTL = 24 * time.Hour
	ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour
	reloads := ta.countReloads()
	ta.start(t)
	a, b := ta.files.content("a"), ta.files.content("b")
	if a != "h1 u1" || b != "1" {
		t.Fatalf("a, b = %q, %q", a, b)
	}

	// A new version without the key b needs: b cannot render, so a, which
	// could, is not written either.
	ta.vault.putKV2("secret/app", map[string]any{"host": "h2"})
	if d := ta.clock.AdvanceToNext(); d != time.Minute {
		t.Fatalf("re-read after %s, want 1m", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !ta.clock.BlockUntil(ctx, ta.loops()) {
		t.Fatal("no retry")
	}
	time.Sleep(10 * time.Millisecond) // the status write after the failure
	if ta.files.content("a") != a || ta.files.content("b") != b {
		t.Errorf("half a set written: a=%q b=%q", ta.files.content("a"), ta.files.content("b"))
	}
	if !ta.statusFile(t).Degraded {
		t.Error("the status does not say degraded")
	}
	if !strings.Contains(ta.logs.String(), `map has no entry for key \"port\"`) {
		t.Errorf("the log does not say why:\n%s", ta.logs.String())
	}

	// A set write that fails (a full volume) writes none either.
	ta.vault.putKV2("secret/app", map[string]any{"host": "h3", "port": "3"})
	ta.files.mu.Lock()
	ta.files.failSet = func(fs []tmpfs.File) error {
		if len(fs) > 1 {
			return tmpfs.ErrFull
		}
		return nil
	}
	ta.files.mu.Unlock()
	ta.step(t)
	if ta.files.content("a") != a || ta.files.content("b") != b {
		t.Errorf("half a set written after a failed write: a=%q b=%q", ta.files.content("a"), ta.files.content("b"))
	}
	ta.files.mu.Lock()
	ta.files.failSet = nil
	ta.files.mu.Unlock()
	ta.step(t)
	if got := ta.files.content("a") + "|" + ta.files.content("b"); got != "h3 u1|3" {
		t.Errorf("after the retry a|b = %q, want the whole new set", got)
	}
	if ta.statusFile(t).Degraded {
		t.Error("still degraded")
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads, want 1 (for the set that was written)", n)
	}
	if n := ta.vault.count("get database/creds/app"); n != 1 {
		t.Errorf("the credentials fetched %d times; the KV changes needed no new lease", n)
	}
}

// A first write with one failing dependency writes no file at all.
func TestAFirstWriteWithAFailingDependencyWritesNoFile(t *testing.T) {
	ta := newTestAgent(t, modeInit, map[string]string{
		"ramvault.io/secret-db":  "database/creds/app",
		"ramvault.io/template-x": `{{ with secret "secret/app" }}{{ .Data.data.host }}{{ end }}`,
	})
	ta.cfg.InitDeadline = 100 * time.Millisecond
	ta.vault.fail = func(call string) error {
		if call == "get secret/app" {
			return denial()
		}
		return nil
	}
	ta.vault.putKV2("secret/app", map[string]any{"host": "h"})
	err := ta.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `fetch secret "x#1" from secret/app`) {
		t.Fatalf("err %v", err)
	}
	if ta.files.Exists("db") || ta.files.Exists("x") {
		t.Error("a file of the set was written")
	}
}

// A template that fails on a value it reads through secret or ref: the
// value is in neither the error nor the log (newTestAgent scans every line
// for "planted-") nor the status file.
func TestATemplateErrorOnADependencyNeverShowsTheValue(t *testing.T) {
	for _, tmpl := range []string{
		`{{ with secret "database/creds/app" }}{{ base64Decode .Data.password }}{{ end }}`,
		`{{ with secret "database/creds/app" }}{{ range .Data.password }}{{ end }}{{ end }}`,
		`{{ with secret "database/creds/app" }}{{ parseJSON .Data.password }}{{ end }}`,
		`{{ with ref "db" }}{{ .Data.password.x }}{{ end }}`,
	} {
		t.Run(tmpl, func(t *testing.T) {
			ta := newTestAgent(t, modeInit, map[string]string{"ramvault.io/secret-db": "database/creds/app", "ramvault.io/template-x": tmpl})
			ta.cfg.InitDeadline = 100 * time.Millisecond
			err := ta.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), "ramvault.io/template-x:1:") {
				t.Fatalf("err %v; want it to name the template and the position", err)
			}
			if strings.Contains(err.Error(), "planted-") {
				t.Errorf("the value is in the error: %v", err)
			}
			if strings.Contains(ta.files.content(".ramvault-status.json"), "planted-") {
				t.Error("the value is in the status file")
			}
		})
	}
}

// The usual Pod: the init container fetches and writes, the sidecar reuses
// its leases and holds no value. When the credentials are re-issued, the
// sidecar reads the KV secret again to render the file (a read: no new
// lease), and the file keeps the same KV value.
func TestASidecarAfterTheInitContainerFetchesWhatItNeedsToRender(t *testing.T) {
	ann := map[string]string{
		"ramvault.io/template-dsn": `{{ with secret "secret/app" }}{{ .Data.data.host }}{{ end }} {{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}`,
		"ramvault.io/reload":       "restart",
	}
	init := newTestAgent(t, modeInit, ann)
	init.vault.putKV2("secret/app", map[string]any{"host": "db.internal"})
	init.vault.tokenTTL = 24 * time.Hour
	init.vault.leaseTTL, init.vault.leaseMax = time.Minute, 100*time.Second
	if err := init.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := init.files.content("dsn"); got != "db.internal u1" {
		t.Fatalf("init wrote %q", got)
	}

	// The sidecar: same Vault, clock, volume and state.
	cfg := init.cfg
	cfg.Mode = modeSidecar
	a, err := assemble(cfg, init.vault, init.files, state.New(init.state))
	if err != nil {
		t.Fatal(err)
	}
	side := &testAgent{agent: a, clock: init.clock, vault: init.vault, files: init.files, state: init.state, logs: init.logs}
	reloads := side.countReloads()
	side.start(t)
	if n := side.vault.count("get "); n != 2 {
		t.Fatalf("%d fetches after the sidecar started; want the init container's 2 reused", n)
	}
	if n := side.vault.count("login"); n != 1 {
		t.Errorf("%d logins, want the init container's one", n)
	}
	for side.vault.count("get database/creds/app") < 2 {
		side.step(t)
		if side.clock.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) > 10*time.Minute {
			t.Fatal("never re-issued")
		}
	}
	if got := side.files.content("dsn"); got != "db.internal u2" {
		t.Errorf("after the re-issue dsn = %q, want the same KV value and the new user", got)
	}
	if n := side.vault.count("get secret/app"); n != 2 {
		t.Errorf("the KV secret read %d times; want once by each process", n)
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
}
