package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Planted secret values: none may appear in a status or a log line.
const (
	user1, pass1 = "v-kubernetes-app-7Hq2user1", "A1a-planted-password-one"
	user2, pass2 = "v-kubernetes-app-9Zx4user2", "B2b-planted-password-two"
	kvValue      = "planted-kv-api-key-3c3c"
	badPass      = "C3c-planted-rejected-pw"
)

var planted = []string{user1, pass1, user2, pass2, kvValue, badPass}

// fakeDB accepts any credentials but those with badPass, whose error quotes
// both values the way a careless driver might.
type fakeDB struct {
	mu     sync.Mutex
	logins []Credentials
	open   int
}

type fakeSession struct{ db *fakeDB }

func (s fakeSession) Close(context.Context) error {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	s.db.open--
	return nil
}

func (db *fakeDB) connect(_ context.Context, c Credentials) (Session, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.logins = append(db.logins, c)
	if c.Password == badPass {
		return nil, fmt.Errorf("failed to connect to `user=%s database=app`: password %q rejected", c.Username, c.Password)
	}
	db.open++
	return fakeSession{db}, nil
}

func (db *fakeDB) loginsSoFar() []Credentials {
	db.mu.Lock()
	defer db.mu.Unlock()
	return append([]Credentials(nil), db.logins...)
}

func (db *fakeDB) openSessions() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.open
}

// syncBuffer is a log sink the app and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t    *testing.T
	dir  string
	url  string
	hup  chan os.Signal
	db   *fakeDB
	logs *syncBuffer
}

// start runs the app on a free port with secrets in a fresh directory and a
// fake database; it stops when the test ends, and must stop cleanly.
func start(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), hup: make(chan os.Signal, 1), db: &fakeDB{}, logs: &syncBuffer{}}
	h.writeCreds(user1, pass1)
	h.write("config", "API_KEY="+kvValue+"\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	cfg := Config{SecretsDir: h.dir, DBFile: "db", ConfigFile: "config", DB: DBAddr{Timeout: time.Second}}
	app := New(cfg, h.db.connect, slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, ln, h.hup) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return within 5s of cancel")
		}
		if n := h.db.openSessions(); n != 0 {
			t.Errorf("%d database sessions open after shutdown, want 0", n)
		}
		h.noPlanted("log", h.logs.String())
	})
	h.waitStatus("the first load", func(s Status) bool { return s.LastReload == sourceStart })
	return h
}

func (h *harness) write(name, content string) {
	h.t.Helper()
	tmp := filepath.Join(h.dir, ".tmp-"+name)
	if err := os.WriteFile(tmp, []byte(content), 0o400); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, name)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) writeCreds(user, pass string) {
	b, _ := json.MarshalIndent(map[string]any{"username": user, "password": pass}, "", "  ")
	h.write("db", string(b)+"\n")
}

// status GETs /status, checks it holds no planted value and decodes it.
func (h *harness) status() Status {
	h.t.Helper()
	resp, err := http.Get(h.url + "/status")
	if err != nil {
		h.t.Fatal(err)
	}
	return h.decode(resp)
}

func (h *harness) decode(resp *http.Response) Status {
	h.t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("%s %s: %s %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, body)
	}
	h.noPlanted("status", string(body))
	var s Status
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		h.t.Fatalf("status JSON: %v\n%s", err, body)
	}
	return s
}

func (h *harness) postReload() Status {
	h.t.Helper()
	resp, err := http.Post(h.url+"/reload", "", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.decode(resp)
}

func (h *harness) waitStatus(what string, ok func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := h.status()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no %s within 5s; status %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) noPlanted(where, text string) {
	h.t.Helper()
	for _, v := range planted {
		if strings.Contains(text, v) {
			h.t.Errorf("%s contains the planted secret value %q:\n%s", where, v, text)
		}
	}
}

func TestStartupLogsInAndDescribesFilesWithoutValues(t *testing.T) {
	h := start(t)
	s := h.status()
	want := Credentials{user1, pass1}.Fingerprint()
	if s.CredentialFingerprint != want || s.DBLoginsOK != 1 || s.DBLoginErrors != 0 || !s.DBConnected || s.CredentialGeneration != 1 {
		t.Errorf("after start: fingerprint %q logins ok %d errors %d connected %v generation %d; want %q 1 0 true 1",
			s.CredentialFingerprint, s.DBLoginsOK, s.DBLoginErrors, s.DBConnected, s.CredentialGeneration, want)
	}
	if s.SignalReloads != 0 || s.HTTPReloads != 0 {
		t.Errorf("the first load counted as a reload: signal %d http %d", s.SignalReloads, s.HTTPReloads)
	}
	if s.ConfigFingerprint == "" || len(s.ConfigFingerprint) != 12 {
		t.Errorf("config fingerprint %q, want 12 hex characters", s.ConfigFingerprint)
	}
	if s.SecretsDirFilesystem == "" || s.SecretsDirFilesystem != db0fs(s) {
		t.Errorf("secrets_dir_filesystem %q, want that of the files (%q)", s.SecretsDirFilesystem, db0fs(s))
	}
	if len(s.Files) != 2 || s.Files[0].Name != "config" || s.Files[1].Name != "db" {
		t.Fatalf("files %+v, want config and db only (no dot files)", s.Files)
	}
	db := s.Files[1]
	if db.Mode != "0400" || db.UID != os.Getuid() || db.Size == 0 || !db.Readable || db.Filesystem == "" {
		t.Errorf("db file described as %+v; want mode 0400, uid %d, its size, readable, a filesystem", db, os.Getuid())
	}
	if got := h.db.loginsSoFar(); len(got) != 1 || got[0] != (Credentials{user1, pass1}) {
		t.Errorf("database logins %v, want one with the file's credentials", len(got))
	}
}

func TestSignalAndHTTPReloadsAreCountedApart(t *testing.T) {
	h := start(t)
	h.hup <- syscall.SIGHUP
	s := h.waitStatus("signal reload", func(s Status) bool { return s.SignalReloads == 1 })
	if s.HTTPReloads != 0 || s.LastReload != sourceSignal || s.DBLoginsOK != 2 {
		t.Errorf("after SIGHUP: http %d last %q logins ok %d; want 0 signal 2", s.HTTPReloads, s.LastReload, s.DBLoginsOK)
	}
	s = h.postReload()
	if s.SignalReloads != 1 || s.HTTPReloads != 1 || s.LastReload != sourceHTTP || s.DBLoginsOK != 3 {
		t.Errorf("POST /reload answered signal %d http %d last %q logins ok %d; want 1 1 http 3", s.SignalReloads, s.HTTPReloads, s.LastReload, s.DBLoginsOK)
	}
	h.hup <- syscall.SIGHUP
	s = h.waitStatus("second signal reload", func(s Status) bool { return s.SignalReloads == 2 })
	if s.HTTPReloads != 1 {
		t.Errorf("http reloads %d after a signal, want still 1", s.HTTPReloads)
	}
	if s.CredentialGeneration != 1 {
		t.Errorf("generation %d after reloads of the same credentials, want 1", s.CredentialGeneration)
	}
	if n := h.db.openSessions(); n != 1 {
		t.Errorf("%d sessions open after reloads, want 1 (the previous one closed)", n)
	}
}

func TestRotatedCredentialsChangeTheFingerprintAndGeneration(t *testing.T) {
	h := start(t)
	before := h.status()
	h.writeCreds(user2, pass2)
	if s := h.status(); s.CredentialFingerprint != before.CredentialFingerprint {
		t.Errorf("fingerprint changed before a reload")
	}
	h.hup <- syscall.SIGHUP
	s := h.waitStatus("signal reload", func(s Status) bool { return s.SignalReloads == 1 })
	if want := (Credentials{user2, pass2}).Fingerprint(); s.CredentialFingerprint != want || s.CredentialFingerprint == before.CredentialFingerprint {
		t.Errorf("fingerprint %q after rotation, want %q (before: %q)", s.CredentialFingerprint, want, before.CredentialFingerprint)
	}
	if s.CredentialGeneration != 2 || !s.DBConnected {
		t.Errorf("generation %d connected %v, want 2 true", s.CredentialGeneration, s.DBConnected)
	}
	logins := h.db.loginsSoFar()
	if last := logins[len(logins)-1]; last != (Credentials{user2, pass2}) {
		t.Errorf("the reload logged in with other credentials than the file's")
	}

	h.write("config", "API_KEY=other-"+kvValue+"\n")
	s2 := h.postReload()
	if s2.ConfigFingerprint == s.ConfigFingerprint {
		t.Errorf("config fingerprint %q unchanged after the KV file changed", s2.ConfigFingerprint)
	}
	if s2.CredentialFingerprint != s.CredentialFingerprint || s2.CredentialGeneration != 2 {
		t.Errorf("credentials unchanged, yet fingerprint %q generation %d", s2.CredentialFingerprint, s2.CredentialGeneration)
	}

	h.writeCreds(user1, pass1) // back to credentials already used
	if s := h.postReload(); s.CredentialGeneration != 2 {
		t.Errorf("generation %d after returning to known credentials, want 2", s.CredentialGeneration)
	}
}

func TestFailedLoginIsCountedAndItsErrorScrubbed(t *testing.T) {
	h := start(t)
	h.writeCreds(user2, badPass)
	s := h.postReload()
	if s.DBLoginErrors != 1 || s.DBConnected || s.DBLoginsOK != 1 {
		t.Errorf("after a refused login: errors %d connected %v ok %d; want 1 false 1", s.DBLoginErrors, s.DBConnected, s.DBLoginsOK)
	}
	if !strings.Contains(s.LastDBError, "<user>") || !strings.Contains(s.LastDBError, "<password>") {
		t.Errorf("last_db_error %q: want the driver's message with user and password replaced", s.LastDBError)
	}
	if n := h.db.openSessions(); n != 0 {
		t.Errorf("%d sessions open after the refused login, want 0", n)
	}

	h.write("db", "username="+user2+"\n") // not JSON
	s = h.postReload()
	if s.DBLoginErrors != 2 || s.CredentialFingerprint != "" || !strings.Contains(s.LastDBError, "not a JSON object") {
		t.Errorf("unparsable file: errors %d fingerprint %q last error %q", s.DBLoginErrors, s.CredentialFingerprint, s.LastDBError)
	}
	if err := os.Remove(filepath.Join(h.dir, "db")); err != nil {
		t.Fatal(err)
	}
	s = h.postReload()
	if s.DBLoginErrors != 3 || !strings.Contains(s.LastDBError, "no such file") {
		t.Errorf("missing file: errors %d last error %q", s.DBLoginErrors, s.LastDBError)
	}

	h.writeCreds(user1, pass1)
	if s = h.postReload(); !s.DBConnected || s.DBLoginsOK != 2 || s.LastDBError == "" {
		t.Errorf("recovered: connected %v ok %d last error %q (kept as history)", s.DBConnected, s.DBLoginsOK, s.LastDBError)
	}
}

func TestEndpoints(t *testing.T) {
	h := start(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/reload", 405},
		{"POST", "/status", 405},
		{"GET", "/nope", 404},
	} {
		req, _ := http.NewRequest(c.method, h.url+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
	if s := h.status(); s.HTTPReloads != 0 {
		t.Errorf("a GET /reload reloaded")
	}
}

func TestFilesystemIsReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := listFiles(dir)
	if err != nil || len(files) != 1 || files[0].Filesystem == "" || files[0].Mode != "0600" || files[0].Size != 1 {
		t.Fatalf("listFiles = %+v, %v", files, err)
	}
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) != nil || int64(st.Type) != tmpfsMagic {
		t.Skip("/dev/shm is not tmpfs here")
	}
	shm, err := os.MkdirTemp("/dev/shm", "example-app-test")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	if err := os.WriteFile(filepath.Join(shm, "db"), []byte("{}"), 0o400); err != nil {
		t.Fatal(err)
	}
	files, err = listFiles(shm)
	if err != nil || len(files) != 1 || files[0].Filesystem != "tmpfs" {
		t.Errorf("listFiles on /dev/shm = %+v, %v; want filesystem tmpfs", files, err)
	}
}

func TestListingAMissingDirectoryIsAnError(t *testing.T) {
	files, err := listFiles(filepath.Join(t.TempDir(), "absent"))
	if err == nil || files == nil {
		t.Errorf("listFiles(absent) = %v, %v; want an empty list and an error", files, err)
	}
}

func TestScrubReplacesBothValues(t *testing.T) {
	c := Credentials{user1, pass1}
	got := scrub("user "+user1+" password "+pass1+" again "+user1, c)
	if want := "user <user> password <password> again <user>"; got != want {
		t.Errorf("scrub = %q, want %q", got, want)
	}
	if got := scrub("nothing", Credentials{}); got != "nothing" {
		t.Errorf("scrub with empty credentials = %q", got)
	}
}

func TestFlags(t *testing.T) {
	env := map[string]string{"PGHOST": "db.example", "PGPORT": "6543", "PGDATABASE": "app", "PGPASSWORD": "ignored", "PGUSER": "ignored"}
	getenv := func(k string) string { return env[k] }
	for _, c := range []struct {
		name    string
		args    []string
		check   func(Config) bool
		wantErr string
	}{
		{"defaults come from the PG environment", nil, func(c Config) bool {
			return c.SecretsDir == "/var/run/secrets/ramvault" && c.DBFile == "db" && c.ConfigFile == "config" &&
				c.Listen == ":8080" && c.DB.Host == "db.example" && c.DB.Port == "6543" && c.DB.Database == "app"
		}, ""},
		{"flags win over the environment", []string{"-pg-host", "h", "-db-file", "creds", "-config-file", ""}, func(c Config) bool {
			return c.DB.Host == "h" && c.DBFile == "creds" && c.ConfigFile == ""
		}, ""},
		{"a path is not a file name", []string{"-db-file", "../db"}, nil, "-db-file"},
		{"stray arguments are refused", []string{"x"}, nil, "unexpected"},
		{"an empty secrets dir is refused", []string{"-secrets-dir", ""}, nil, "-secrets-dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseFlags(c.args, getenv, io.Discard)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil || !c.check(cfg) {
				t.Errorf("parseFlags(%q) = %+v, %v", c.args, cfg, err)
			}
		})
	}
}

func TestPgConnectorErrorsNeverQuoteThePassword(t *testing.T) {
	// A closed port: the connect fails at once, with pgx's own message.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	connect, err := pgConnector(DBAddr{Host: "127.0.0.1", Port: port, Database: "app", SSLMode: "disable", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := Credentials{user1, pass1}
	_, err = connect(ctx, c)
	if err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	msg := scrub(describeDBError(err), c)
	if strings.Contains(msg, user1) || strings.Contains(msg, pass1) || msg == "" {
		t.Errorf("message %q quotes a credential", msg)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("closed port reported as a timeout: %v", err)
	}
}

func db0fs(s Status) string {
	if len(s.Files) == 0 {
		return ""
	}
	return s.Files[0].Filesystem
}
