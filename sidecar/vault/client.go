// Package vault is the agent's Vault client: the few calls the agent makes
// (log in, read or write a secret, renew and revoke leases and its token),
// each under the caller's context. Requests go through
// github.com/hashicorp/vault/api; the answers are decoded here, keeping
// numbers exactly as Vault sent them.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Client is the agent's view of Vault: every call takes its own context
// (the caller bounds it with a timeout). The Vault client library brings the
// address, TLS, namespace and token headers, redirects and the Vault error
// envelope; the answers are decoded here.
type Client struct {
	c    lib // carries the Vault token
	anon lib // no token: logins

	mu     sync.Mutex
	mounts map[string]mountInfo     // KV detection cache by secret path
	asking map[string]chan struct{} // mount lookups in flight, by first path segment
}

type mountInfo struct {
	kvVersion int // 0: not KV; 1 or 2
	mount     string
}

// Secret is one secret as Vault returned it.
type Secret struct {
	// Data is the secret's key/values: for KV v2, the version's data
	// (the response's data.data), what a one-secret file renders.
	Data map[string]any
	// Raw is the response's data as Vault sent it (for KV v2,
	// {"data": …, "metadata": …}): what consul-template's `secret` gives.
	Raw           map[string]any
	Warnings      []string
	LeaseID       string
	LeaseDuration time.Duration
	Renewable     bool
	Version       string    // KV v2 version, or certificate serial
	NotAfter      time.Time // certificate expiry for PKI responses
}

// envelope is Vault's response envelope. Numbers inside data stay
// json.Number, so they render exactly as Vault sent them.
type envelope struct {
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int64          `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	Warnings      []string       `json:"warnings"`
	Auth          *Auth          `json:"auth"`
}

// Auth is the token a login returned.
type Auth struct {
	ClientToken   string   `json:"client_token"`
	Policies      []string `json:"policies"`
	LeaseDuration int64    `json:"lease_duration"`
	Renewable     bool     `json:"renewable"`
}

// ResponseError is a Vault answer outside 2xx/3xx. Its message carries the
// method, path and Vault's own error strings; never a body we sent.
type ResponseError struct {
	Method     string
	Path       string
	StatusCode int
	Errors     []string
	RetryAfter string // the Retry-After header of a 429 or 503, as sent
}

// RetryAfter is how long Vault asked the agent to wait before it asks again
// (the Retry-After of a 429 or 503, in seconds or as a date), or 0.
func RetryAfter(err error, now time.Time) time.Duration {
	var re *ResponseError
	if !errors.As(err, &re) || re.RetryAfter == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(re.RetryAfter), 10, 64); err == nil {
		if n <= 0 || n > int64(24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(re.RetryAfter); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("vault %s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), strings.Join(e.Errors, "; "))
}

// Options configure a Client. Only these configure it: not VAULT_TOKEN,
// VAULT_NAMESPACE, VAULT_CACERT or the rest of the Vault CLI's environment.
type Options struct {
	Addr          string // http(s)://host[:port]
	CACert        string // PEM file of the CA that signs Vault's certificate; "" for the system roots
	TLSServerName string
	Namespace     string
	Timeout       time.Duration // of each request, as a last resort (callers bound each call)
}

// New is a Client for Vault at o.Addr, with no token yet.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("--vault-addr %q: %w", o.Addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--vault-addr %q: want http(s)://host[:port]", o.Addr)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if errors.Is(err, fs.ErrNotExist) {
			// In a Pod: the CA ConfigMap's volume is optional, so that a
			// missing ConfigMap is told here, not by a Pod that waits.
			return nil, fmt.Errorf("vault TLS settings: no CA bundle at %s: does the ConfigMap named by ramvault.io/vault-ca-configmap (or the injector's --vault-ca-configmap) exist in the Pod's namespace, with the key ca.crt?", o.CACert)
		}
		if err != nil {
			return nil, fmt.Errorf("vault TLS settings: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("vault TLS settings: no PEM certificate in %s", o.CACert)
		}
		tlsCfg.RootCAs = pool
	}
	// The transport is ours (the Vault client's default would read
	// VAULT_CACERT and VAULT_SKIP_VERIFY from the environment): TLS
	// verification is always on.
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true, // one multiplexed connection over TLS
		// The first write sends every fetch (and its mount lookup) at
		// once; keep those connections for the renewals that follow.
		MaxIdleConns:        32,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
	}
	client := func() (*vaultapi.Client, error) {
		c, err := vaultapi.NewClient(&vaultapi.Config{
			Address:    o.Addr,
			HttpClient: &http.Client{Transport: limitErrorBodies{tr}, CheckRedirect: oneRedirect},
			Timeout:    o.Timeout,
			MaxRetries: 0, // the agent retries with its own backoff
		})
		if err != nil {
			return nil, fmt.Errorf("vault client: %w", err)
		}
		// Only flags and annotations configure the agent: not VAULT_TOKEN
		// or VAULT_NAMESPACE from its environment.
		c.ClearToken()
		c.ClearNamespace()
		if o.Namespace != "" {
			c.SetNamespace(o.Namespace)
		}
		return c, nil
	}
	v := &Client{mounts: map[string]mountInfo{}, asking: map[string]chan struct{}{}}
	c, err := client()
	if err != nil {
		return nil, err
	}
	anon, err := client()
	if err != nil {
		return nil, err
	}
	v.c, v.anon = libOf(c), libOf(anon)
	return v, nil
}

// maxErrorBody is how much of an error answer is read. Vault's own errors
// are a few hundred bytes; a proxy's error page can be anything (a 100 MiB
// one took the agent to 873 MiB: the Vault client library copies an error
// body whole before the agent sees it).
const maxErrorBody = 64 << 10

// maxErrorText is how much of an error body that is not Vault's JSON
// envelope goes into the error (and so the log).
const maxErrorText = 512

// limitErrorBodies cuts the body of every answer outside 2xx/3xx to
// maxErrorBody, under the library's reading.
type limitErrorBodies struct{ next http.RoundTripper }

func (l limitErrorBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err == nil && (resp.StatusCode < 200 || resp.StatusCode >= 400) {
		resp.Body = limitedBody{io.LimitReader(resp.Body, maxErrorBody), resp.Body}
		resp.ContentLength = -1
	}
	return resp, err
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// oneRedirect follows one redirect, to the same host (scheme, host and
// port), never from https to http. Another host would receive the Vault
// token (net/http forwards X-Vault-Token, unlike Authorization) or, for a
// login, the service-account token in the re-sent body. An HA standby that
// redirects to the active node instead of forwarding is refused: point
// --vault-addr at the active node or at a load balancer in front of them.
func oneRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > 1 {
		return errors.New("vault redirected more than once")
	}
	from := via[0].URL
	if from.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("vault redirect would downgrade https to http")
	}
	if req.URL.Scheme != from.Scheme || req.URL.Host != from.Host {
		return fmt.Errorf("vault redirected to another host (%s://%s); the agent does not send its token there: set --vault-addr (or ramvault.io/vault-addr) to the address that answers", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// lib is the Vault client library's client, held as the functions the agent
// calls. Not as a *vaultapi.Client: the agent holds its Client through an
// interface and links text/template (whose reflective method calls keep
// every exported method of every type reachable from a type put in an
// interface), so a field of that type kept all of vaultapi's Sys, Logical,
// TokenAuth… methods: 740 KB more in the stripped binary (9.95 MB → 10.69 MB; 9.99 MB this way).
type lib struct {
	read     func(ctx context.Context, path string, query map[string][]string) (*http.Response, error)
	write    func(ctx context.Context, path string, body []byte) (*http.Response, error)
	setToken func(token string)
	clone    func() lib // same configuration and connections, no token
}

func libOf(c *vaultapi.Client) lib {
	unwrap := func(r *vaultapi.Response, err error) (*http.Response, error) {
		if r == nil {
			return nil, err
		}
		return r.Response, err
	}
	return lib{
		read: func(ctx context.Context, path string, query map[string][]string) (*http.Response, error) {
			return unwrap(c.Logical().ReadRawWithDataWithContext(ctx, path, query))
		},
		write: func(ctx context.Context, path string, body []byte) (*http.Response, error) {
			return unwrap(c.Logical().WriteRawWithContext(ctx, path, body))
		},
		setToken: c.SetToken,
		clone: func() lib {
			cc, err := c.Clone()
			if err != nil {
				cc = c
			}
			return libOf(cc)
		},
	}
}

// withToken is a client for another token sharing the same connections.
func (v *Client) withToken(t string) *Client {
	c := v.c.clone()
	c.setToken(t)
	return &Client{c: c, anon: v.anon, mounts: map[string]mountInfo{}, asking: map[string]chan struct{}{}}
}

// SetToken makes t the token of every later call.
func (v *Client) SetToken(t string) { v.c.setToken(t) }

// call sends one request to /v1/<path> and decodes the answer. For a read,
// a 404 with data or warnings in the body (a deleted KV v2 version) is an
// answer and a bare 404 is (nil, nil), as the Vault client's Read has it; an
// empty body is (nil, nil).
func (v *Client) call(ctx context.Context, method, path string, body any, auth bool) (*envelope, error) {
	return v.callQuery(ctx, method, path, nil, body, auth)
}

// callQuery is call with a query string (a read of a KV v2 version).
func (v *Client) callQuery(ctx context.Context, method, path string, query map[string][]string, body any, auth bool) (*envelope, error) {
	c := v.c
	if !auth {
		c = v.anon
	}
	var resp *http.Response
	var err error
	switch method {
	case http.MethodGet:
		resp, err = c.read(ctx, path, query)
	case http.MethodPut:
		var b []byte
		if body != nil {
			if b, err = json.Marshal(body); err != nil {
				return nil, err
			}
		}
		resp, err = c.write(ctx, path, b)
	default:
		return nil, fmt.Errorf("vault %s /v1/%s: method not used by the agent", method, path)
	}
	var vre *vaultapi.ResponseError
	if err != nil && !errors.As(err, &vre) || resp == nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, err // no answer: connection, timeout, a refused redirect
	}
	defer resp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if rerr != nil {
		return nil, fmt.Errorf("vault %s /v1/%s: reading the response: %w", method, path, rerr)
	}
	if resp.StatusCode == http.StatusNotFound && method == http.MethodGet {
		s, err := parseSecret(raw)
		if err != nil || s == nil || (len(s.Warnings) == 0 && len(s.Data) == 0) {
			return nil, nil
		}
		return s, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		re := &ResponseError{Method: method, Path: "/v1/" + path, StatusCode: resp.StatusCode}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			re.RetryAfter = resp.Header.Get("Retry-After")
		}
		var e struct {
			Errors []string `json:"errors"`
		}
		switch {
		case vre != nil && len(vre.Errors) > 0:
			re.Errors = vre.Errors
		case json.Unmarshal(raw, &e) == nil:
			re.Errors = e.Errors
		default:
			re.Errors = []string{strings.TrimSpace(string(raw))}
		}
		for i, e := range re.Errors {
			if len(e) > maxErrorText {
				re.Errors[i] = strings.ToValidUTF8(e[:maxErrorText], "") + "… (cut)"
			}
		}
		return nil, re
	}
	return parseSecret(raw)
}

// parseSecret decodes Vault's envelope, keeping numbers as json.Number; a
// body that is not an envelope becomes the data (as the Vault client does).
func parseSecret(raw []byte) (*envelope, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var s envelope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode vault response: %w", err)
	}
	if s.LeaseID == "" && s.LeaseDuration == 0 && !s.Renewable && s.Data == nil && s.Warnings == nil && s.Auth == nil {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("decode vault response: %w", err)
		}
		if errs, ok := m["errors"]; ok {
			if len(m) == 1 {
				return nil, nil
			}
			return nil, fmt.Errorf("vault: %v", errs)
		}
		if len(m) > 0 {
			s.Data = m
		}
	}
	return &s, nil
}

// Login performs Kubernetes auth with the projected token, read afresh from
// its file each time (the kubelet rotates it in place).
func (v *Client) Login(ctx context.Context, authPath, role, tokenFile string) (*Auth, error) {
	jwt, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read service-account token: %w", err)
	}
	s, err := v.call(ctx, http.MethodPut, "auth/"+authPath+"/login", map[string]any{
		"role": role, "jwt": strings.TrimSpace(string(jwt)),
	}, false)
	if err != nil {
		return nil, fmt.Errorf("log in to vault (auth/%s, role %q): %w", authPath, role, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("log in to vault (auth/%s, role %q): no token in the response", authPath, role)
	}
	return s.Auth, nil
}

// kv detects whether path lies on a KV mount and which version, as the Vault
// CLI does (sys/internal/ui/mounts), caching the answer. While a lookup for
// another path with the same first segment is in flight (the first write
// asks for every secret at once), it waits for that answer instead of asking
// too: the secrets of a Pod mostly share a mount or two, and on a busy Vault
// every request of the first write slows the others.
func (v *Client) kv(ctx context.Context, path string) (mountInfo, error) {
	seg, _, _ := strings.Cut(path, "/")
	waited := false
	v.mu.Lock()
	for {
		if mi, ok := v.cachedMount(path); ok {
			v.mu.Unlock()
			return mi, nil
		}
		busy, ok := v.asking[seg]
		if !ok || waited {
			break
		}
		v.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return mountInfo{}, ctx.Err()
		}
		// Once: if that mount is not this path's, ask for this path.
		waited = true
		v.mu.Lock()
	}
	done := make(chan struct{})
	if _, ok := v.asking[seg]; !ok {
		v.asking[seg] = done
	}
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if v.asking[seg] == done {
			delete(v.asking, seg)
		}
		v.mu.Unlock()
		close(done)
	}()

	var mi mountInfo
	s, err := v.call(ctx, http.MethodGet, "sys/internal/ui/mounts/"+path, nil, true)
	if err != nil {
		var re *ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			// No visibility of the mount: treat it as a plain read
			// (and do not ask again at every re-read).
			v.mu.Lock()
			v.mounts[path] = mi
			v.mu.Unlock()
			return mi, nil
		}
		return mountInfo{}, err
	}
	if s != nil && s.Data != nil {
		typ, _ := s.Data["type"].(string)
		mi.mount, _ = s.Data["path"].(string)
		if typ == "kv" || typ == "generic" {
			mi.kvVersion = 1
			if opts, ok := s.Data["options"].(map[string]any); ok && fmt.Sprint(opts["version"]) == "2" {
				mi.kvVersion = 2
			}
		}
	}
	v.mu.Lock()
	v.mounts[path] = mi
	v.mu.Unlock()
	return mi, nil
}

// cachedMount answers from the cache: this path, or another on the same
// mount. v.mu is held.
func (v *Client) cachedMount(path string) (mountInfo, bool) {
	if mi, ok := v.mounts[path]; ok {
		return mi, true
	}
	for _, m := range v.mounts {
		if m.mount != "" && strings.HasPrefix(path, m.mount) {
			return m, true
		}
	}
	return mountInfo{}, false
}

// Get fetches a secret: KV v1/v2 reads (v2 path rewritten to data/), leased
// reads, or a write with parameters. A read's path may end in ?version=N
// (a KV v2 version, as consul-template's `secret "kv/app?version=3"`).
func (v *Client) Get(ctx context.Context, method, path string, params map[string]string) (*Secret, error) {
	if method == "write" {
		body := make(map[string]any, len(params))
		for k, val := range params {
			body[k] = val
		}
		s, err := v.call(ctx, http.MethodPut, path, body, true)
		if err != nil {
			return nil, err
		}
		return fromSecret(s, false, path)
	}
	var query map[string][]string
	if p, ver, ok := strings.Cut(path, "?version="); ok {
		path, query = p, map[string][]string{"version": {ver}}
	}
	// A known mount (every re-read, and each secret after the first on a
	// mount), or a lookup in flight for this first segment and a path that
	// may need data/: one read of the right path, after the answer.
	seg, _, _ := strings.Cut(path, "/")
	v.mu.Lock()
	mi, known := v.cachedMount(path)
	_, asked := v.asking[seg]
	v.mu.Unlock()
	if known || (asked && !strings.Contains(path, "/data/")) {
		if !known {
			var err error
			if mi, err = v.kv(ctx, path); err != nil {
				return nil, err
			}
		}
		readPath := mi.readPath(path)
		s, err := v.callQuery(ctx, http.MethodGet, readPath, query, nil, true)
		if err != nil {
			return nil, err
		}
		return fromSecret(s, mi.kvVersion == 2, readPath)
	}
	// Else ask which mount the path is on and, at the same time, read the
	// path as written: for everything but a KV v2 path written without
	// data/, that read is the answer, and the first write does not wait
	// for two round trips in a row.
	type readResult struct {
		s   *envelope
		err error
	}
	direct := make(chan readResult, 1)
	go func() {
		s, err := v.callQuery(ctx, http.MethodGet, path, query, nil, true)
		direct <- readResult{s, err}
	}()
	mi, err := v.kv(ctx, path)
	if err != nil {
		<-direct
		return nil, err
	}
	readPath := mi.readPath(path)
	r := <-direct
	if readPath != path {
		r.s, r.err = v.callQuery(ctx, http.MethodGet, readPath, query, nil, true)
	}
	if r.err != nil {
		return nil, r.err
	}
	return fromSecret(r.s, mi.kvVersion == 2, readPath)
}

// readPath is the path a read of path requests on this mount: on KV v2,
// data/ inserted after the mount unless it is there already.
func (mi mountInfo) readPath(path string) string {
	if mi.kvVersion != 2 {
		return path
	}
	rel := strings.TrimPrefix(path, mi.mount)
	if strings.HasPrefix(rel, "data/") {
		return path
	}
	return mi.mount + "data/" + rel
}

// ReadPath is the path a read of path requests (KV v2: with data/), from
// the mount lookup Get makes too (cached per mount): `secret/app` and
// `secret/data/app` on a v2 mount are one request.
func (v *Client) ReadPath(ctx context.Context, path string) (string, error) {
	mi, err := v.kv(ctx, path)
	if err != nil {
		return "", err
	}
	return mi.readPath(path), nil
}

func fromSecret(s *envelope, kv2 bool, path string) (*Secret, error) {
	if s == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	f := &Secret{Data: s.Data, Raw: s.Data, Warnings: s.Warnings, LeaseID: s.LeaseID, LeaseDuration: time.Duration(s.LeaseDuration) * time.Second, Renewable: s.Renewable}
	if kv2 {
		inner, ok := s.Data["data"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %w (deleted or destroyed version)", path, ErrNotFound)
		}
		f.Data = inner
		if md, ok := s.Data["metadata"].(map[string]any); ok {
			f.Version = fmt.Sprint(md["version"])
		}
	}
	if serial, ok := f.Data["serial_number"].(string); ok {
		f.Version = serial
	}
	if exp := f.Data["expiration"]; exp != nil {
		if n, err := strconv.ParseInt(fmt.Sprint(exp), 10, 64); err == nil && n > 0 {
			f.NotAfter = time.Unix(n, 0)
		}
	}
	return f, nil
}

// ErrNotFound is a read of a path that holds no secret (or a deleted KV v2
// version).
var ErrNotFound = errors.New("no secret at this path")

// errNoAnswer is an empty answer where Vault always sends one.
var errNoAnswer = errors.New("vault sent an empty response")

// RenewLease asks for the lease to be extended by increment and returns the
// TTL Vault granted.
func (v *Client) RenewLease(ctx context.Context, leaseID string, increment time.Duration) (time.Duration, error) {
	s, err := v.call(ctx, http.MethodPut, "sys/leases/renew", map[string]any{"lease_id": leaseID, "increment": int(increment.Seconds())}, true)
	if err != nil {
		return 0, err
	}
	if s == nil {
		return 0, fmt.Errorf("renew lease: %w", errNoAnswer)
	}
	return time.Duration(s.LeaseDuration) * time.Second, nil
}

// RenewSelf renews the client's token; it returns the TTL granted and
// whether the token can be renewed again.
func (v *Client) RenewSelf(ctx context.Context) (ttl time.Duration, renewable bool, err error) {
	s, err := v.call(ctx, http.MethodPut, "auth/token/renew-self", map[string]any{"increment": 0}, true)
	if err != nil {
		return 0, false, err
	}
	if s == nil || s.Auth == nil {
		return 0, false, errors.New("token renewal returned no auth")
	}
	return time.Duration(s.Auth.LeaseDuration) * time.Second, s.Auth.Renewable, nil
}

// LookupSelf returns the remaining TTL of the current token.
func (v *Client) LookupSelf(ctx context.Context) (time.Duration, error) {
	s, err := v.call(ctx, http.MethodGet, "auth/token/lookup-self", nil, true)
	if err != nil {
		return 0, err
	}
	if s == nil || s.Data["ttl"] == nil {
		return 0, nil
	}
	ttl, err := strconv.ParseInt(fmt.Sprint(s.Data["ttl"]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("token lookup: ttl %v: %w", s.Data["ttl"], err)
	}
	return time.Duration(ttl) * time.Second, nil
}

// RevokeLease revokes one lease at once.
func (v *Client) RevokeLease(ctx context.Context, leaseID string) error {
	_, err := v.call(ctx, http.MethodPut, "sys/leases/revoke", map[string]any{"lease_id": leaseID}, true)
	return err
}

// RevokeSelf revokes the client's token (and, in Vault, every lease made
// with it).
func (v *Client) RevokeSelf(ctx context.Context) error {
	_, err := v.call(ctx, http.MethodPut, "auth/token/revoke-self", nil, true)
	return err
}

// RevokeToken revokes another token (the one a new login replaced) through
// its own revoke-self, on the same connections.
func (v *Client) RevokeToken(ctx context.Context, token string) error {
	return v.withToken(token).RevokeSelf(ctx)
}

// Permanent reports errors retrying cannot fix soon (bad request, denied,
// missing): they still back off, but to the cap quickly.
func Permanent(err error) bool {
	var re *ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusNotFound
	}
	return errors.Is(err, ErrNotFound)
}

// Denied reports a 403 from Vault.
func Denied(err error) bool {
	var re *ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}
