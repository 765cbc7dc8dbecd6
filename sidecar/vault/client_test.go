package vault

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// fakeVault answers a few endpoints the way Vault does and records what the
// agent sent.
type fakeVault struct {
	t        *testing.T
	handlers map[string]func(w http.ResponseWriter, r *http.Request, body map[string]any)
	seen     chan *http.Request
}

func newFakeVault(t *testing.T) (*fakeVault, *httptest.Server) {
	f := &fakeVault{t: t, handlers: map[string]func(http.ResponseWriter, *http.Request, map[string]any){}, seen: make(chan *http.Request, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
			}
		}
		select {
		case f.seen <- r:
		default:
		}
		h, ok := f.handlers[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errors":[]}`)
			return
		}
		h(w, r, body)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func reply(status int, body string) func(http.ResponseWriter, *http.Request, map[string]any) {
	return func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func testClient(t *testing.T, addr string) *Client {
	t.Helper()
	v, err := New(Options{Addr: addr, Namespace: "team-a", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVaultClientReadsKVv2AsTheVaultCLIDoes(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/sys/internal/ui/mounts/secret/app"] = reply(200, `{"data":{"type":"kv","path":"secret/","options":{"version":"2"}}}`)
	f.handlers["GET /v1/secret/data/app"] = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		if r.Header.Get("X-Vault-Token") != "tok" || r.Header.Get("X-Vault-Namespace") != "team-a" || r.Header.Get("X-Vault-Request") != "true" {
			t.Errorf("headers %v", r.Header)
		}
		_, _ = io.WriteString(w, `{"data":{"data":{"port":5432,"big":12345678901234567890,"pw":"x"},"metadata":{"version":7}}}`)
	}
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	got, err := v.Get(context.Background(), "", "secret/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "7" {
		t.Errorf("version %q, want 7", got.Version)
	}
	// Numbers keep Vault's spelling in every format.
	b, _ := json.Marshal(got.Data)
	if string(b) != `{"big":12345678901234567890,"port":5432,"pw":"x"}` {
		t.Errorf("data %s", b)
	}
}

func TestVaultClientAnswers(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/sys/internal/ui/mounts/database/creds/app"] = reply(200, `{"data":{"type":"database","path":"database/"}}`)
	f.handlers["GET /v1/database/creds/app"] = reply(200, `{"lease_id":"database/creds/app/abc","lease_duration":600,"renewable":true,"data":{"username":"u","password":"p"}}`)
	f.handlers["GET /v1/sys/internal/ui/mounts/secret/gone"] = reply(403, `{"errors":["permission denied"]}`)
	f.handlers["GET /v1/secret/gone"] = reply(404, `{"errors":[]}`)
	f.handlers["GET /v1/sys/internal/ui/mounts/secret/data/deleted"] = reply(200, `{"data":{"type":"kv","path":"secret/","options":{"version":"2"}}}`)
	f.handlers["GET /v1/secret/data/deleted"] = reply(404, `{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2025-01-01T00:00:00Z"}}}`)
	f.handlers["GET /v1/sys/internal/ui/mounts/locked/denied"] = reply(403, `{"errors":["permission denied"]}`)
	f.handlers["GET /v1/locked/denied"] = reply(403, `{"errors":["1 error occurred:\n\t* permission denied\n\n"]}`)
	f.handlers["PUT /v1/pki/issue/web"] = func(w http.ResponseWriter, _ *http.Request, body map[string]any) {
		if body["common_name"] != "a.example" {
			t.Errorf("pki body %v", body)
		}
		_, _ = io.WriteString(w, `{"data":{"serial_number":"1a:2b","expiration":1900000000,"certificate":"C"}}`)
	}
	f.handlers["GET /v1/auth/token/lookup-self"] = reply(200, `{"data":{"ttl":3599,"policies":["default"]}}`)
	f.handlers["PUT /v1/sys/leases/renew"] = func(w http.ResponseWriter, _ *http.Request, body map[string]any) {
		if body["lease_id"] != "L" || body["increment"] != float64(600) {
			t.Errorf("renew body %v", body)
		}
		_, _ = io.WriteString(w, `{"lease_id":"L","lease_duration":300,"renewable":true}`)
	}
	f.handlers["PUT /v1/auth/token/renew-self"] = reply(200, `{"auth":{"client_token":"tok","lease_duration":1800,"renewable":true}}`)
	f.handlers["PUT /v1/auth/token/revoke-self"] = reply(204, ``)
	f.handlers["PUT /v1/sys/leases/revoke"] = reply(204, ``)
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	ctx := context.Background()

	t.Run("a leased secret carries its lease", func(t *testing.T) {
		got, err := v.Get(ctx, "", "database/creds/app", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.LeaseID != "database/creds/app/abc" || got.LeaseDuration != 10*time.Minute || !got.Renewable || got.Data["username"] != "u" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("a missing path is not found, and permanent", func(t *testing.T) {
		_, err := v.Get(ctx, "", "secret/gone", nil)
		if !errors.Is(err, ErrNotFound) || !Permanent(err) {
			t.Errorf("err %v", err)
		}
	})
	t.Run("a deleted KV v2 version is not found", func(t *testing.T) {
		_, err := v.Get(ctx, "", "secret/data/deleted", nil)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "deleted") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("a denial says so and names the path", func(t *testing.T) {
		_, err := v.Get(ctx, "", "locked/denied", nil)
		if !Denied(err) || !Permanent(err) || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "GET /v1/locked/denied: 403") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("a write sends its parameters and reads the certificate's serial and end", func(t *testing.T) {
		got, err := v.Get(ctx, "write", "pki/issue/web", map[string]string{"common_name": "a.example"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != "1a:2b" || !got.NotAfter.Equal(time.Unix(1900000000, 0)) {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("token and lease calls", func(t *testing.T) {
		if ttl, err := v.LookupSelf(ctx); err != nil || ttl != 3599*time.Second {
			t.Errorf("lookup-self %v %v", ttl, err)
		}
		if ttl, err := v.RenewLease(ctx, "L", 10*time.Minute); err != nil || ttl != 5*time.Minute {
			t.Errorf("renew %v %v", ttl, err)
		}
		if ttl, ok, err := v.RenewSelf(ctx); err != nil || ttl != 30*time.Minute || !ok {
			t.Errorf("renew-self %v %v %v", ttl, ok, err)
		}
		if err := v.RevokeLease(ctx, "L"); err != nil {
			t.Error(err)
		}
		if err := v.RevokeSelf(ctx); err != nil {
			t.Error(err)
		}
	})
	t.Run("a write to a missing path is an error", func(t *testing.T) {
		_, err := v.Get(ctx, "write", "nothing/here", nil)
		var re *ResponseError
		if !errors.As(err, &re) || re.StatusCode != 404 {
			t.Errorf("err %v", err)
		}
	})
}

func TestLoginSendsTheTokenFileAndNoVaultToken(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["PUT /v1/auth/k8s/login"] = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		if r.Header.Get("X-Vault-Token") != "" {
			t.Error("a login carried the previous Vault token")
		}
		if body["jwt"] != "jwt-1" || body["role"] != "app" {
			t.Errorf("login body %v", body)
		}
		_, _ = io.WriteString(w, `{"auth":{"client_token":"s.new","lease_duration":3600,"renewable":true,"policies":["default","app"]}}`)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("jwt-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := testClient(t, srv.URL)
	v.SetToken("s.old")
	auth, err := v.Login(context.Background(), "k8s", "app", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if auth.ClientToken != "s.new" || auth.LeaseDuration != 3600 || !auth.Renewable {
		t.Errorf("auth %+v", auth)
	}
	if _, err := v.Login(context.Background(), "kubernetes", "app", tokenFile); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("login to a missing auth mount: %v", err)
	}
}

func TestRedirectsNeverDowngradeHTTPS(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the token was sent over http after a redirect")
	}))
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(tlsSrv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := New(Options{Addr: tlsSrv.URL, CACert: ca, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v.SetToken("tok")
	if _, err := v.LookupSelf(context.Background()); err == nil || !strings.Contains(err.Error(), "downgrade") {
		t.Errorf("err %v", err)
	}
}

// The first write asks for every secret at once: secrets on one mount share
// one mount lookup; other mounts are asked at the same time.
func TestConcurrentFetchesShareAMountLookup(t *testing.T) {
	f, srv := newFakeVault(t)
	lookups := make(chan string, 10)
	release := make(chan struct{})
	mount := func(path, typ, version string) func(http.ResponseWriter, *http.Request, map[string]any) {
		return func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
			lookups <- r.URL.Path
			<-release
			_, _ = io.WriteString(w, `{"data":{"type":"`+typ+`","path":"`+path+`","options":{"version":"`+version+`"}}}`)
		}
	}
	for _, p := range []string{"a", "b", "c"} {
		f.handlers["GET /v1/sys/internal/ui/mounts/secret/"+p] = mount("secret/", "kv", "2")
		f.handlers["GET /v1/secret/data/"+p] = reply(200, `{"data":{"data":{"k":"`+p+`"},"metadata":{"version":1}}}`)
	}
	f.handlers["GET /v1/sys/internal/ui/mounts/secret-v1/x"] = mount("secret-v1/", "kv", "1")
	f.handlers["GET /v1/secret-v1/x"] = reply(200, `{"data":{"k":"x"}}`)
	f.handlers["GET /v1/secret/a"] = reply(404, `{"errors":[]}`)
	f.handlers["GET /v1/secret/b"] = reply(404, `{"errors":[]}`)
	f.handlers["GET /v1/secret/c"] = reply(404, `{"errors":[]}`)
	v := testClient(t, srv.URL)
	v.SetToken("tok")

	type res struct {
		path string
		f    *Secret
		err  error
	}
	out := make(chan res, 4)
	for _, p := range []string{"secret/a", "secret/b", "secret/c", "secret-v1/x"} {
		go func() {
			got, err := v.Get(context.Background(), "", p, nil)
			out <- res{p, got, err}
		}()
	}
	// Two lookups: secret/… (one for three paths) and secret-v1/x.
	seen := map[string]bool{<-lookups: true, <-lookups: true}
	select {
	case p := <-lookups:
		t.Errorf("a third lookup before the first answered: %s", p)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	for range 4 {
		r := <-out
		if r.err != nil {
			t.Errorf("%s: %v", r.path, r.err)
			continue
		}
		if want := r.path[len(r.path)-1:]; r.f.Data["k"] != want {
			t.Errorf("%s: data %v", r.path, r.f.Data)
		}
	}
	if len(lookups) != 0 || !seen["/v1/sys/internal/ui/mounts/secret-v1/x"] {
		t.Errorf("lookups: first %v, then %d more", seen, len(lookups))
	}
}

// Two mounts under one first segment: the second path waits for the first
// answer, sees it is not its mount, and asks for itself.
func TestNestedMountsGetTheirOwnAnswer(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/sys/internal/ui/mounts/team/a/x"] = reply(200, `{"data":{"type":"kv","path":"team/a/","options":{"version":"2"}}}`)
	f.handlers["GET /v1/team/a/x"] = reply(404, `{"errors":[]}`)
	f.handlers["GET /v1/team/a/data/x"] = reply(200, `{"data":{"data":{"k":"v2"},"metadata":{"version":3}}}`)
	f.handlers["GET /v1/sys/internal/ui/mounts/team/b/y"] = reply(200, `{"data":{"type":"kv","path":"team/b/","options":{"version":"1"}}}`)
	f.handlers["GET /v1/team/b/y"] = reply(200, `{"data":{"k":"v1"}}`)
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	errs := make(chan error, 2)
	for p, want := range map[string]string{"team/a/x": "v2", "team/b/y": "v1"} {
		go func() {
			got, err := v.Get(context.Background(), "", p, nil)
			if err == nil && got.Data["k"] != want {
				err = errors.New(p + ": wrong data")
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// countingBody is an 8 MiB error page that counts what was read of it.
type countingBody struct{ read, closed *atomic.Int64 }

func (b countingBody) Read(p []byte) (int, error) {
	if b.read.Load() >= 8<<20 {
		return 0, io.EOF
	}
	for i := range p {
		p[i] = 'x'
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}
func (b countingBody) Close() error { b.closed.Add(1); return nil }

type hugeErrorPage struct{ read, closed atomic.Int64 }

func (e *hugeErrorPage) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusBadGateway, Status: "502 Bad Gateway", Header: http.Header{"Content-Type": {"text/html"}},
		Body: countingBody{&e.read, &e.closed}, ContentLength: -1, Request: req}, nil
}

// A huge error page (a proxy's, say) is read no further than 64 KiB, and
// the error keeps only the start of it.
func TestAnErrorBodyIsReadOnlyUpToALimit(t *testing.T) {
	page := &hugeErrorPage{}
	v := testClient(t, "http://vault.invalid:8200")
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: "http://vault.invalid:8200",
		HttpClient: &http.Client{Transport: limitErrorBodies{page}}, MaxRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	v.c = libOf(c)
	_, err = v.LookupSelf(context.Background())
	var re *ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadGateway {
		t.Fatalf("err %v", err)
	}
	if n := page.read.Load(); n > maxErrorBody+32<<10 {
		t.Errorf("read %d bytes of the error page; want about %d at most", n, maxErrorBody)
	}
	if page.closed.Load() == 0 {
		t.Error("the body was not closed")
	}
	if len(err.Error()) > maxErrorText+200 {
		t.Errorf("error of %d bytes; want the page cut to %d", len(err.Error()), maxErrorText)
	}
}

// A redirect to another host is not followed: the token would go there.
// One to another path of the same host is.
func TestRedirectsStayOnTheHost(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("another host got %s with token %q", r.URL.Path, r.Header.Get("X-Vault-Token"))
	}))
	t.Cleanup(other.Close)
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/auth/token/lookup-self"] = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}
	f.handlers["PUT /v1/auth/k8s/login"] = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}
	f.handlers["PUT /v1/sys/leases/renew"] = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		http.Redirect(w, r, "/v1/sys/leases/renew2", http.StatusTemporaryRedirect)
	}
	f.handlers["PUT /v1/sys/leases/renew2"] = reply(200, `{"lease_id":"L","lease_duration":300,"renewable":true}`)
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	if _, err := v.LookupSelf(context.Background()); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("redirect to another host: err %v", err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Login(context.Background(), "k8s", "app", tokenFile); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("login redirected to another host: err %v", err)
	}
	if ttl, err := v.RenewLease(context.Background(), "L", time.Minute); err != nil || ttl != 5*time.Minute {
		t.Errorf("redirect on the same host: %v %v", ttl, err)
	}
}

// A 429 or 503 carries its Retry-After, in seconds or as a date.
func TestRetryAfterIsKept(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/auth/token/lookup-self"] = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.Header().Set("Retry-After", "12")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"errors":["request path \"auth/token/lookup-self\": rate limit quota exceeded"]}`)
	}
	f.handlers["PUT /v1/sys/leases/renew"] = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.Header().Set("Retry-After", "12")
		w.WriteHeader(http.StatusInternalServerError)
	}
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	now := time.Now()
	_, err := v.LookupSelf(context.Background())
	if got := RetryAfter(err, now); got != 12*time.Second {
		t.Errorf("429: RetryAfter %s (err %v), want 12s", got, err)
	}
	if _, err := v.RenewLease(context.Background(), "L", time.Minute); err == nil || RetryAfter(err, now) != 0 {
		t.Errorf("500: RetryAfter %s (err %v), want none: only 429 and 503 ask to wait", RetryAfter(err, now), err)
	}
	date := &ResponseError{StatusCode: 503, RetryAfter: now.Add(90 * time.Second).UTC().Format(http.TimeFormat)}
	if got := RetryAfter(date, now); got < 89*time.Second || got > 90*time.Second {
		t.Errorf("a date 90s ahead: %s", got)
	}
	for _, bad := range []string{"-1", "soon", "0"} {
		if got := RetryAfter(&ResponseError{StatusCode: 503, RetryAfter: bad}, now); got != 0 {
			t.Errorf("Retry-After %q: %s, want 0", bad, got)
		}
	}
}

func TestAMissingCABundleNamesTheConfigMap(t *testing.T) {
	_, err := New(Options{Addr: "https://vault:8200", CACert: filepath.Join(t.TempDir(), "ca.crt"), Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "ramvault.io/vault-ca-configmap") {
		t.Errorf("New with a missing CA file: %v; want an error naming the ConfigMap annotation", err)
	}
}

// A template's `secret "secret/app?version=2"` on KV v2: the read goes to
// data/ with the version as a query, and Raw is the response as sent
// (data and metadata, consul-template's shape); ReadPath answers from the
// same cached lookup.
func TestAKVv2ReadKeepsTheRawResponseAndTakesAVersion(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/sys/internal/ui/mounts/secret/app"] = reply(200, `{"data":{"type":"kv","path":"secret/","options":{"version":"2"}}}`)
	f.handlers["GET /v1/secret/data/app"] = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		if r.URL.Query().Get("version") != "2" {
			t.Errorf("query %q, want version=2", r.URL.RawQuery)
		}
		_, _ = io.WriteString(w, `{"data":{"data":{"k":"v"},"metadata":{"version":2}},"warnings":["w"]}`)
	}
	v := testClient(t, srv.URL)
	got, err := v.Get(context.Background(), "read", "secret/app?version=2", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(got.Raw)
	data, _ := json.Marshal(got.Data)
	if string(raw) != `{"data":{"k":"v"},"metadata":{"version":2}}` || string(data) != `{"k":"v"}` || got.Version != "2" || len(got.Warnings) != 1 {
		t.Errorf("raw %s, data %s, version %q, warnings %v", raw, data, got.Version, got.Warnings)
	}
	for in, want := range map[string]string{"secret/app": "secret/data/app", "secret/data/app": "secret/data/app"} {
		if p, err := v.ReadPath(context.Background(), in); err != nil || p != want {
			t.Errorf("ReadPath(%s) = %s, %v; want %s", in, p, err, want)
		}
	}
}

// After the first read on a mount, a read is one request of the path as it
// is read (a re-read of a KV v2 secret written without data/ used to send
// the path as written too, a 404); a mount the policy may not look up is not
// asked again either.
func TestAKnownOrAskedForMountSavesTheReadAsWritten(t *testing.T) {
	f, srv := newFakeVault(t)
	f.handlers["GET /v1/sys/internal/ui/mounts/secret/app"] = reply(200, `{"data":{"type":"kv","path":"secret/","options":{"version":"2"}}}`)
	f.handlers["GET /v1/secret/app"] = reply(404, `{"errors":[]}`)
	f.handlers["GET /v1/secret/data/app"] = reply(200, `{"data":{"data":{"k":"v"},"metadata":{"version":1}}}`)
	f.handlers["GET /v1/secret/data/other"] = reply(200, `{"data":{"data":{"k":"o"},"metadata":{"version":1}}}`)
	f.handlers["GET /v1/sys/internal/ui/mounts/hidden/x"] = reply(403, `{"errors":["permission denied"]}`)
	f.handlers["GET /v1/hidden/x"] = reply(200, `{"data":{"k":"h"}}`)
	v := testClient(t, srv.URL)
	v.SetToken("tok")
	sent := func() (paths []string) {
		for {
			select {
			case r := <-f.seen:
				paths = append(paths, r.URL.Path)
			default:
				return paths
			}
		}
	}
	for _, p := range []string{"secret/app", "hidden/x"} {
		if _, err := v.Get(context.Background(), "", p, nil); err != nil {
			t.Fatal(err)
		}
	}
	first := sent() // lookup + read as written (+ data/ for secret/app)
	if len(first) != 5 {
		t.Errorf("first reads sent %v, want 5 requests", first)
	}
	for _, c := range []struct{ path, want string }{
		{"secret/app", "/v1/secret/data/app"},
		{"secret/other", "/v1/secret/data/other"},
		{"hidden/x", "/v1/hidden/x"},
	} {
		got, err := v.Get(context.Background(), "", c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Data["k"] == nil {
			t.Errorf("%s: no data", c.path)
		}
		if s := sent(); len(s) != 1 || s[0] != c.want {
			t.Errorf("%s on a known mount sent %v, want only %s", c.path, s, c.want)
		}
	}
}
