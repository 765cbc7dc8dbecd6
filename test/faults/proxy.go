// Package faults is a fault-injecting HTTP proxy for the tests: it stands
// between a Pod's agent and the stack's one Vault (which every test and
// helper shares, so it must never be stopped) and, switched at run time,
// forwards, refuses connections, closes them, answers 500/503/429 (with
// Retry-After), hangs or is slow. Every request is logged with its times
// and status, for tests that assert what the agent asked and when.
//
// A Proxy listens on the pod bridge's gateway (stack.Gateway) on one of
// Ports, each of which the dev overlay's allowed-vault-addrs lists, so a Pod
// reaches it with ramvault.io/vault-addr: p.Addr().
package faults

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Ports are the proxy ports on the gateway that manifests/overlays/dev
// (and the chart's dev example) allow as Vault addresses. Start takes the
// first free one, so parallel tests and test binaries each get their own.
var Ports = []int{18201, 18202, 18203, 18204, 18205, 18206, 18207, 18208, 18209, 18210, 18211, 18212}

// Kind is what the proxy does with a request.
type Kind int

const (
	Forward Kind = iota // to Vault, as is
	Refuse              // no listener: connections are refused
	Close               // accept, then close the connection without an answer
	Status              // answer Mode.Code (with Mode.RetryAfter), Vault's error envelope
	Hang                // hold the request until the client gives up or the mode changes
	Slow                // wait Mode.Delay, then forward
)

func (k Kind) String() string {
	return [...]string{"forward", "refuse", "close", "status", "hang", "slow"}[k]
}

// Mode is the proxy's behaviour. Paths, when set, limits the fault to
// requests whose path (after /v1/) starts with one of them; the others are
// forwarded.
type Mode struct {
	Kind       Kind
	Code       int           // Status
	RetryAfter string        // Status: the Retry-After header, if any
	Delay      time.Duration // Slow
	Paths      []string
}

func (m Mode) applies(path string) bool {
	if len(m.Paths) == 0 {
		return true
	}
	p := strings.TrimPrefix(path, "/v1/")
	for _, pre := range m.Paths {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// Request is one request the proxy saw.
type Request struct {
	Start, End time.Time
	Method     string
	Path       string // without the query
	Status     int    // 0: no answer (closed, hung up, refused upstream)
	Fault      string // the mode that handled it ("forward" when none)
	Remote     string
}

// Proxy is one fault-injecting proxy in front of Vault.
type Proxy struct {
	addr    string // host:port it listens on
	backend *httputil.ReverseProxy
	srv     *http.Server

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every Set
	ln      net.Listener  // nil while refusing
	lock    *os.File      // holds the port for this proxy, also while refusing
	log     []Request
	serving sync.WaitGroup
}

// Start runs a proxy to vault (an http:// address) on host at the first of
// Ports it can listen on, in Forward mode; it stops with the test.
func Start(t testing.TB, host, vault string) *Proxy {
	t.Helper()
	p, err := Listen(host, vault)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Listen is Start outside a test: the caller calls Stop.
func Listen(host, vault string) (*Proxy, error) {
	u, err := url.Parse(vault)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("vault address %q: want http://host:port", vault)
	}
	p := &Proxy{changed: make(chan struct{})}
	p.backend = httputil.NewSingleHostReverseProxy(u)
	p.backend.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusBadGateway)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	var errs []error
	for _, port := range Ports {
		lock, err := reserve(port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			_ = lock.Close()
			errs = append(errs, err)
			continue
		}
		p.addr, p.lock = ln.Addr().String(), lock
		p.listen(ln)
		return p, nil
	}
	return nil, fmt.Errorf("no free proxy port on %s: %w", host, errors.Join(errs...))
}

func (p *Proxy) listen(ln net.Listener) {
	p.ln = ln
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		_ = p.srv.Serve(ln)
	}()
}

// Addr is the proxy as a Vault address: http://host:port.
func (p *Proxy) Addr() string { return "http://" + p.addr }

// Set switches the mode; requests held by Hang are released (and then
// handled by the new mode). Refuse closes the listener and every open
// connection; leaving it listens again on the same port.
func (p *Proxy) Set(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	wasRefusing := p.mode.Kind == Refuse
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	switch {
	case m.Kind == Refuse && !wasRefusing:
		// Close the listener and drop the connections the agent keeps
		// alive, so that its next request meets a refused connection.
		ln := p.ln
		p.ln = nil
		p.srv.SetKeepAlivesEnabled(false)
		_ = ln.Close()
		p.mu.Unlock()
		p.serving.Wait()
		p.mu.Lock()
		p.srv.SetKeepAlivesEnabled(true)
	case m.Kind != Refuse && wasRefusing:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("listen again on %s: %w", p.addr, err)
		}
		p.listen(ln)
	}
	return nil
}

// Stop closes the proxy and every connection.
func (p *Proxy) Stop() {
	_ = p.srv.Close()
	p.serving.Wait()
	_ = p.lock.Close()
}

// reserve takes the port for this process until the file it returns is
// closed: a proxy in Refuse mode has no listener, and another proxy (of
// this test binary or another) must not take its port meanwhile.
func reserve(port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("ramvault-faults-%d.lock", port)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("port %d: held by another proxy", port)
	}
	return f, nil
}

// Requests is a copy of the log so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

// Matching is the requests whose path (after /v1/) starts with prefix.
func (p *Proxy) Matching(prefix string) []Request {
	var out []Request
	for _, r := range p.Requests() {
		if strings.HasPrefix(strings.TrimPrefix(r.Path, "/v1/"), prefix) {
			out = append(out, r)
		}
	}
	return out
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Start: time.Now(), Method: r.Method, Path: r.URL.Path, Remote: r.RemoteAddr}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.End, rec.Status = time.Now(), sw.code
		p.mu.Lock()
		p.log = append(p.log, rec)
		p.mu.Unlock()
	}()
	for {
		p.mu.Lock()
		m, changed := p.mode, p.changed
		p.mu.Unlock()
		if !m.applies(r.URL.Path) {
			m = Mode{Kind: Forward}
		}
		rec.Fault = m.Kind.String()
		switch m.Kind {
		case Forward, Refuse: // Refuse: a request on a connection accepted before
			p.backend.ServeHTTP(sw, r)
			return
		case Slow:
			select {
			case <-time.After(m.Delay):
			case <-r.Context().Done():
				return
			}
			p.backend.ServeHTTP(sw, r)
			return
		case Status:
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			if m.RetryAfter != "" {
				w.Header().Set("Retry-After", m.RetryAfter)
			}
			w.Header().Set("Content-Type", "application/json")
			sw.WriteHeader(m.Code)
			fmt.Fprintf(sw, `{"errors":["fault proxy: %d %s"]}`, m.Code, http.StatusText(m.Code))
			return
		case Close:
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
				}
			}
			return
		case Hang:
			select {
			case <-r.Context().Done():
				return
			case <-changed:
				continue // handled by the new mode
			}
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets the reverse proxy stream.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
