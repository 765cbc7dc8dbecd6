package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// vaultAPI is the agent's view of Vault: every call takes its own context
// (the caller bounds it with a timeout).
type vaultAPI struct {
	c *vault.Client

	mu     sync.Mutex
	mounts map[string]mountInfo // KV detection cache by secret path
}

type mountInfo struct {
	kvVersion int // 0: not KV; 1 or 2
	mount     string
}

// fetched is one secret as Vault returned it.
type fetched struct {
	Data          map[string]any
	LeaseID       string
	LeaseDuration time.Duration
	Renewable     bool
	Version       string    // KV v2 version, or certificate serial
	NotAfter      time.Time // certificate expiry for PKI responses
}

func newVaultAPI(cfg Config) (*vaultAPI, error) {
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	vc.Address = cfg.VaultAddr
	vc.MaxRetries = 0 // the agent retries with its own backoff
	vc.Timeout = cfg.CallTimeout
	if cfg.CACert != "" || cfg.TLSServerName != "" {
		if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert, TLSServerName: cfg.TLSServerName}); err != nil {
			return nil, fmt.Errorf("vault TLS settings: %w", err)
		}
	}
	c, err := vault.NewClient(vc)
	if err != nil {
		return nil, err
	}
	c.ClearToken() // never pick up VAULT_TOKEN from the environment
	if cfg.VaultNamespace != "" {
		c.SetNamespace(cfg.VaultNamespace)
	}
	return &vaultAPI{c: c, mounts: map[string]mountInfo{}}, nil
}

func (v *vaultAPI) setToken(t string) { v.c.SetToken(t) }

// login performs Kubernetes auth with the projected token, read afresh from
// its file each time (the kubelet rotates it in place).
func (v *vaultAPI) login(ctx context.Context, authPath, role, tokenFile string) (*vault.SecretAuth, error) {
	jwt, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read service-account token: %w", err)
	}
	s, err := v.c.Logical().WriteWithContext(ctx, "auth/"+authPath+"/login", map[string]any{
		"role": role, "jwt": strings.TrimSpace(string(jwt)),
	})
	if err != nil {
		return nil, fmt.Errorf("log in to vault (auth/%s, role %q): %w", authPath, role, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, fmt.Errorf("log in to vault (auth/%s, role %q): no token in the response", authPath, role)
	}
	return s.Auth, nil
}

// kv detects whether path lies on a KV mount and which version, as the Vault
// CLI does (sys/internal/ui/mounts), caching the answer.
func (v *vaultAPI) kv(ctx context.Context, path string) (mountInfo, error) {
	v.mu.Lock()
	mi, ok := v.mounts[path]
	if !ok {
		// Another secret on the same mount answered already.
		for _, m := range v.mounts {
			if m.mount != "" && strings.HasPrefix(path, m.mount) {
				mi, ok = m, true
				break
			}
		}
	}
	v.mu.Unlock()
	if ok {
		return mi, nil
	}
	s, err := v.c.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+path)
	if err != nil {
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			// No visibility of the mount: treat it as a plain read.
			return mountInfo{}, nil
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

// get fetches a secret: KV v1/v2 reads (v2 path rewritten to data/), leased
// reads, or a write with parameters.
func (v *vaultAPI) get(ctx context.Context, method, path string, params map[string]string) (*fetched, error) {
	if method == "write" {
		body := make(map[string]any, len(params))
		for k, val := range params {
			body[k] = val
		}
		s, err := v.c.Logical().WriteWithContext(ctx, path, body)
		if err != nil {
			return nil, err
		}
		return fromSecret(s, false, path)
	}
	// Ask which mount the path is on and, at the same time, read the path
	// as written: for everything but a KV v2 path written without data/,
	// that read is the answer, and the first write does not wait for two
	// round trips in a row.
	type readResult struct {
		s   *vault.Secret
		err error
	}
	direct := make(chan readResult, 1)
	go func() {
		s, err := v.c.Logical().ReadWithContext(ctx, path)
		direct <- readResult{s, err}
	}()
	mi, err := v.kv(ctx, path)
	if err != nil {
		<-direct
		return nil, err
	}
	readPath := path
	if mi.kvVersion == 2 {
		rel := strings.TrimPrefix(path, mi.mount)
		if !strings.HasPrefix(rel, "data/") {
			readPath = mi.mount + "data/" + rel
		}
	}
	r := <-direct
	if readPath != path {
		r.s, r.err = v.c.Logical().ReadWithContext(ctx, readPath)
	}
	if r.err != nil {
		return nil, r.err
	}
	return fromSecret(r.s, mi.kvVersion == 2, readPath)
}

func fromSecret(s *vault.Secret, kv2 bool, path string) (*fetched, error) {
	if s == nil {
		return nil, fmt.Errorf("%s: %w", path, errNotFound)
	}
	f := &fetched{Data: s.Data, LeaseID: s.LeaseID, LeaseDuration: time.Duration(s.LeaseDuration) * time.Second, Renewable: s.Renewable}
	if kv2 {
		inner, ok := s.Data["data"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %w (deleted or destroyed version)", path, errNotFound)
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

var errNotFound = errors.New("no secret at this path")

func (v *vaultAPI) renewLease(ctx context.Context, leaseID string, increment time.Duration) (time.Duration, error) {
	s, err := v.c.Sys().RenewWithContext(ctx, leaseID, int(increment.Seconds()))
	if err != nil {
		return 0, err
	}
	return time.Duration(s.LeaseDuration) * time.Second, nil
}

func (v *vaultAPI) renewSelf(ctx context.Context) (ttl time.Duration, renewable bool, err error) {
	s, err := v.c.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return 0, false, err
	}
	if s.Auth == nil {
		return 0, false, errors.New("token renewal returned no auth")
	}
	return time.Duration(s.Auth.LeaseDuration) * time.Second, s.Auth.Renewable, nil
}

// lookupSelf returns the remaining TTL of the current token.
func (v *vaultAPI) lookupSelf(ctx context.Context) (time.Duration, error) {
	s, err := v.c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return 0, err
	}
	ttl, err := s.TokenTTL()
	return ttl, err
}

func (v *vaultAPI) revokeLease(ctx context.Context, leaseID string) error {
	return v.c.Sys().RevokeWithContext(ctx, leaseID)
}

func (v *vaultAPI) revokeSelf(ctx context.Context) error {
	return v.c.Auth().Token().RevokeSelfWithContext(ctx, "")
}

// permanent reports errors retrying cannot fix soon (bad request, denied,
// missing): they still back off, but to the cap quickly.
func permanent(err error) bool {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusNotFound
	}
	return errors.Is(err, errNotFound)
}

// denied reports a 403 from Vault.
func denied(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}
