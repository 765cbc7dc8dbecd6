// Command bench-webhook compares three admission webhooks on this machine,
// same run, same request bytes, over HTTPS on loopback: the `ramvault
// webhook` binary (built from this tree), hashicorp/vault-k8s v1.6.2's
// injector (bin/vault-k8s, test/tools/build-vaultk8s.sh) and a floor that
// only decodes the AdmissionReview and allows it. Each server is a process
// of its own and logs at its default level to a file; the load comes from
// -c keep-alive HTTPS clients (one connection each) in this process.
//
// The request is the CREATE of a Deployment's Pod as the apiserver sends it
// to a mutating webhook (defaults and the service-account volume applied),
// annotated for both injectors, so both inject; each server must answer it
// allowed (with a patch, for the two injectors) before it is timed.
//
//	make bench-webhook
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ramvault/ramvault/test/stack"
)

func main() {
	n := flag.Int("n", 20000, "timed requests per server (split over -rounds)")
	conc := flag.Int("c", 8, "concurrent keep-alive HTTPS clients")
	warmup := flag.Int("warmup", 2000, "untimed requests per server before the first round")
	rounds := flag.Int("rounds", 2, "rounds; each runs every server in turn, so drift in the machine's load spreads over all three")
	vaultK8s := flag.String("vault-k8s", "", "vault-k8s webhook binary (default: bin/vault-k8s of the repository)")
	floor := flag.Bool("serve-floor", false, "internal: serve the floor handler")
	addr := flag.String("addr", "", "internal: address of -serve-floor")
	cert := flag.String("cert", "", "internal: certificate of -serve-floor")
	key := flag.String("key", "", "internal: key of -serve-floor")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	var err error
	if *floor {
		err = serveFloor(ctx, *addr, *cert, *key)
	} else {
		err = run(ctx, *n, *conc, *warmup, *rounds, *vaultK8s)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-webhook:", err)
		os.Exit(1)
	}
}

// server is one webhook under test.
type server struct {
	name   string
	argv   func(addr string) []string
	patch  bool // its answer must carry a patch
	url    string
	cmd    *exec.Cmd
	exited chan error // closed once cmd has been waited for
	log    string
	result result
}

// result is what the rounds measured for one server.
type result struct {
	requests  int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r result) quantile(q float64) time.Duration {
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func run(ctx context.Context, n, conc, warmup, rounds int, vaultK8s string) error {
	if n < rounds || conc < 1 || rounds < 1 {
		return errors.New("-n must be at least -rounds, and -c and -rounds positive")
	}
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	if vaultK8s == "" {
		vaultK8s = filepath.Join(root, "bin", "vault-k8s")
	}
	if _, err := os.Stat(vaultK8s); err != nil {
		return fmt.Errorf("vault-k8s webhook: %w (build it: test/tools/build-vaultk8s.sh)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-webhook-")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()

	fmt.Fprintln(os.Stderr, "bench-webhook: building ramvault...")
	ramvault := filepath.Join(dir, "ramvault")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", ramvault, "./cmd/ramvault")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ramvault: %w", err)
	}
	// The pair in a directory of its own, as in a Secret volume: the
	// servers' logs go to dir, and a server that watches its certificate's
	// directory for rotations (ramvault) must not be woken by every line
	// the three of them write.
	tlsDir := filepath.Join(dir, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		return err
	}
	pool, certFile, keyFile, err := writeCert(tlsDir)
	if err != nil {
		return err
	}
	// Never contacted: the webhook builds its client at start and uses it
	// only for the Events of denials (none here). --native-sidecars skips
	// the discovery of the server version.
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fakeKubeconfig), 0o600); err != nil {
		return err
	}
	const vaultAddr = "https://vault.vault.svc:8200"
	servers := []*server{
		{name: "ramvault", patch: true, argv: func(addr string) []string {
			return []string{ramvault, "webhook", "--addr", addr, "--metrics-addr", "127.0.0.1:0", "--kubeconfig", kubeconfig,
				"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--vault-addr", vaultAddr,
				"--native-sidecars=true", "--shutdown-delay", "0s"}
		}},
		{name: "vault-k8s", patch: true, argv: func(addr string) []string {
			return []string{vaultK8s, "--listen", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--vault-address", vaultAddr}
		}},
		{name: "floor", argv: func(addr string) []string {
			return []string{self, "-serve-floor", "-addr", addr, "-cert", certFile, "-key", keyFile}
		}},
	}
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	body, err := admissionReview()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if err := s.start(ctx, dir, pool); err != nil {
			keep = true
			return fmt.Errorf("%s: %w (log: %s)", s.name, err, s.log)
		}
		if err := s.check(pool, body); err != nil {
			keep = true
			return fmt.Errorf("%s: %w (log: %s)", s.name, err, s.log)
		}
	}

	fmt.Fprintf(os.Stderr, "bench-webhook: %d-byte AdmissionReview, %d warm-up + %d timed requests per server, %d clients, %d rounds\n",
		len(body), warmup, n, conc, rounds)
	for _, s := range servers {
		if _, _, err := load(ctx, s.url, pool, body, warmup, conc); err != nil {
			return fmt.Errorf("%s: warm-up: %w", s.name, err)
		}
	}
	for r := range rounds {
		per := n / rounds
		if r == rounds-1 {
			per = n - per*(rounds-1)
		}
		for i := range servers {
			s := servers[(i+r)%len(servers)] // a different one goes first each round
			lat, elapsed, err := load(ctx, s.url, pool, body, per, conc)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.result.requests += per
			s.result.elapsed += elapsed
			s.result.latencies = append(s.result.latencies, lat...)
			fmt.Fprintf(os.Stderr, "bench-webhook: round %d %-9s %8.0f req/s\n", r+1, s.name, float64(per)/elapsed.Seconds())
		}
	}
	for _, s := range servers {
		slices.Sort(s.result.latencies)
	}
	report(os.Stdout, servers[0].result, servers[1].result, servers[2].result, len(body), n, conc)
	return nil
}

// report prints the table, the ratios and the goals.
func report(w io.Writer, rv, vk, fl result, size, n, conc int) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", d.Seconds()*1000) }
	fmt.Fprintf(w, "\nAdmissionReview v1 CREATE Pod (%d bytes), %d requests per server, %d keep-alive HTTPS clients, loopback\n\n", size, n, conc)
	fmt.Fprintln(w, "| server | req/s | p50 | p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, row := range []struct {
		name string
		r    result
	}{{"ramvault webhook", rv}, {"vault-k8s v1.6.2", vk}, {"floor (decode, allow)", fl}} {
		fmt.Fprintf(w, "| %s | %.0f | %s | %s |\n", row.name, row.r.rps(), ms(row.r.quantile(0.50)), ms(row.r.quantile(0.99)))
	}
	ratio := func(a, b time.Duration) float64 { return a.Seconds() / b.Seconds() }
	fmt.Fprintln(w, "\n| ratio | req/s (higher: ramvault faster) | p50 (lower: ramvault faster) | p99 (lower: ramvault faster) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, row := range []struct {
		name string
		r    result
	}{{"ramvault / vault-k8s", vk}, {"ramvault / floor", fl}} {
		fmt.Fprintf(w, "| %s | %.2fx | %.2fx | %.2fx |\n", row.name, rv.rps()/row.r.rps(),
			ratio(rv.quantile(0.50), row.r.quantile(0.50)), ratio(rv.quantile(0.99), row.r.quantile(0.99)))
	}
	tput, p99 := rv.rps()/vk.rps(), ratio(rv.quantile(0.99), vk.quantile(0.99))
	ahead := verdict(tput > 1 && p99 < 1)
	if tput >= 2 && p99 <= 0.5 {
		ahead += ", stretch 2x met"
	}
	ftput, fp99 := rv.rps()/fl.rps(), ratio(rv.quantile(0.99), fl.quantile(0.99))
	fmt.Fprintf(w, "\nGoals: ahead of vault-k8s on throughput and p99 (stretch 2x); within 2x of the floor.\n")
	fmt.Fprintf(w, "- vs vault-k8s: throughput %.2fx, p99 %.2fx of vault-k8s's: %s\n", tput, p99, ahead)
	fmt.Fprintf(w, "- vs floor: throughput %.2fx, p99 %.2fx of the floor's: %s\n", ftput, fp99, verdict(ftput >= 0.5 && fp99 <= 2))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// load sends count requests over conc keep-alive connections and returns
// each one's latency and the wall time of them all. Any answer but a 200 is
// an error.
func load(ctx context.Context, url string, pool *x509.CertPool, body []byte, count, conc int) ([]time.Duration, time.Duration, error) {
	var next atomic.Int64
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	clients := make([]*http.Client, conc)
	for i := range clients {
		clients[i] = newClient(pool)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conc {
		wg.Go(func() {
			lat[i] = make([]time.Duration, 0, count/conc+1)
			for next.Add(1) <= int64(count) && ctx.Err() == nil {
				t := time.Now()
				if _, err := post(ctx, clients[i], url, body); err != nil {
					errs[i] = err
					return
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, 0, err
	}
	return slices.Concat(lat...), elapsed, nil
}

// newClient is one keep-alive HTTPS/1.1 connection, as the apiserver's
// webhook client keeps them.
func newClient(pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func post(ctx context.Context, c *http.Client, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, out)
	}
	return out, nil
}

// start runs the server on a free loopback port and waits for its TLS.
func (s *server) start(ctx context.Context, dir string, pool *x509.CertPool) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	s.url = "https://" + addr + "/mutate"
	s.log = filepath.Join(dir, s.name+".log")
	f, err := os.Create(s.log)
	if err != nil {
		return err
	}
	defer f.Close()
	argv := s.argv(addr)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	s.exited = exited
	go func() { exited <- s.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case err := <-exited:
			s.cmd = nil
			return fmt.Errorf("exited before serving: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving TLS on %s after 30s: %w", addr, err)
		}
	}
}

// stop ends the one process this run started for the server, through its
// *os.Process (never a raw pid: a pid of -1 or 0 would signal every process
// or the whole group), and waits for it; SIGKILL after 10s.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// check sends the request once and insists on an allowed answer to it, with
// a JSONPatch when the server injects.
func (s *server) check(pool *x509.CertPool, body []byte) error {
	out, err := post(context.Background(), newClient(pool), s.url, body)
	if err != nil {
		return err
	}
	var review struct {
		Response *struct {
			UID       string `json:"uid"`
			Allowed   bool   `json:"allowed"`
			Patch     []byte `json:"patch"`
			PatchType string `json:"patchType"`
			Status    *struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(out, &review); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	r := review.Response
	switch {
	case r == nil:
		return errors.New("answer without a response")
	case r.UID != reviewUID:
		return fmt.Errorf("answer for uid %q, want %q", r.UID, reviewUID)
	case !r.Allowed && r.Status != nil:
		return fmt.Errorf("not allowed: %s", r.Status.Message)
	case !r.Allowed:
		return errors.New("not allowed")
	case s.patch && (len(r.Patch) == 0 || r.PatchType != "JSONPatch"):
		return errors.New("allowed without a JSONPatch: the Pod was not injected")
	}
	var ops []json.RawMessage
	if s.patch {
		if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) == 0 {
			return fmt.Errorf("patch is not a non-empty JSONPatch: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "bench-webhook: %-9s allowed, %d-byte answer, %d patch operations\n", s.name, len(out), len(ops))
	return nil
}

// writeCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// returns the pool that trusts it.
func writeCert(dir string) (*x509.CertPool, string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench-webhook"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", "", err
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, "", "", err
	}
	pool := x509.NewCertPool()
	pool.AddCert(crt)
	return pool, certFile, keyFile, nil
}

const fakeKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: none
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: none
  user: {token: none}
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
`
