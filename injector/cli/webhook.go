package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	apiversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/admission"
	"github.com/ramvault/ramvault/injector/kube"
	"github.com/ramvault/ramvault/injector/leaderelection"
	"github.com/ramvault/ramvault/injector/servingcert"
	"github.com/ramvault/ramvault/pkg/version"
)

// WebhookConfig is the configuration of `ramvault webhook`, from its flags.
type WebhookConfig struct {
	Inject          injector.Config // the injection defaults, the flags of `ramvault inject`
	DiscoverNative  bool            // --native-sidecars not given: ask the apiserver's version
	Addr            string
	MetricsAddr     string
	Kubeconfig      string
	MaxRequestBytes int64
	ShutdownDelay   time.Duration
	ShutdownTimeout time.Duration
	LogLevel        slog.Level

	CertFile, KeyFile string
	SelfSigned        bool
	ServiceName       string
	ClusterDomain     string
	SANs              []string
	Certs             servingcert.SelfSignedOptions // Hosts are made of ServiceName, ClusterDomain and SANs
	Lease             leaderelection.Config         // Namespace is Certs.Namespace, Identity this replica's
}

const webhookUsage = `ramvault webhook: the admission webhook that injects the ramvault agent.

Serves AdmissionReviews over HTTPS at /mutate (--addr) and, over HTTP on
--metrics-addr, /metrics, /healthz and /readyz (ready once a serving
certificate is loaded). TLS comes from --tls-cert-file and --tls-key-file,
reloaded when they change, or, with --self-signed, from a CA and serving
certificate the injector keeps itself in a Secret of --namespace, renewing
them and the caBundle of --webhook-config-name (one replica writes, elected
with a Lease; every replica serves what the Secret holds).

The other flags are the injection defaults of 'ramvault inject', also
readable from --config. Without --native-sidecars the webhook asks the
apiserver its version: native sidecars from Kubernetes 1.29.

Flags:
`

// parseWebhookFlags reads the flags of `ramvault webhook` and reports every
// problem at once, each naming its flag.
func parseWebhookFlags(args []string, stderr io.Writer) (WebhookConfig, error) {
	c := WebhookConfig{Inject: defaultConfig(), Lease: leaderelection.Config{
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}}
	fs := flag.NewFlagSet("ramvault webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), webhookUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", ":8443", "address of the HTTPS webhook server (/mutate)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9090", "address of the HTTP server of /metrics, /healthz and /readyz")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty: the in-cluster service account")
	fs.Int64Var(&c.MaxRequestBytes, "max-request-bytes", admission.DefaultMaxBodyBytes, "largest AdmissionReview accepted; a larger one is answered 413")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM, how long to keep serving (unready) while the endpoints drop this replica")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&c.CertFile, "tls-cert-file", "", "serving certificate (PEM, chain); reloaded when it changes")
	fs.StringVar(&c.KeyFile, "tls-key-file", "", "key of --tls-cert-file (PEM)")
	fs.BoolVar(&c.SelfSigned, "self-signed", false, "keep a CA and serving certificate in a Secret, and the caBundle of --webhook-config-name, current")
	fs.StringVar(&c.Certs.Namespace, "namespace", "", "namespace of the injector: its Secret and Lease (with --self-signed)")
	fs.StringVar(&c.ServiceName, "service-name", "ramvault-injector", "Service of the webhook: the serving certificate is for <service>.<namespace>.svc and the like")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain, for the serving certificate's names")
	fs.Var(listFlag{&c.SANs}, "tls-san", "comma-separated extra DNS names and IP addresses of the serving certificate")
	fs.StringVar(&c.Certs.SecretName, "secret-name", "ramvault-injector-tls", "Secret holding the CA and the serving certificate")
	fs.StringVar(&c.Certs.WebhookConfig, "webhook-config-name", "ramvault-injector", "MutatingWebhookConfiguration whose caBundle is kept current")
	fs.StringVar(&c.Lease.Name, "lease-name", "ramvault-injector", "Lease of the leader election")
	fs.DurationVar(&c.Certs.CertValidity, "cert-validity", 90*24*time.Hour, "validity of the serving certificate; renewed at two thirds")
	fs.DurationVar(&c.Certs.CAValidity, "ca-validity", 5*365*24*time.Hour, "validity of the CA; renewed at two thirds")
	fs.DurationVar(&c.Certs.PollInterval, "secret-poll-interval", 10*time.Second, "how often every replica reads the Secret")
	fs.DurationVar(&c.Certs.Resync, "resync-interval", time.Minute, "how often the leader checks the Secret and the caBundle")
	fs.DurationVar(&c.Certs.CAPropagation, "ca-propagation-delay", 10*time.Second, "how long a new CA is in the caBundle before a certificate it signed is served")
	fs.DurationVar(&c.Lease.LeaseDuration, "leader-election-lease-duration", c.Lease.LeaseDuration, "how long the others wait before taking a Lease its holder stopped renewing")
	fs.DurationVar(&c.Lease.RenewDeadline, "leader-election-renew-deadline", c.Lease.RenewDeadline, "how long the leader tries to renew the Lease before it stops leading")
	fs.DurationVar(&c.Lease.RetryPeriod, "leader-election-retry-period", c.Lease.RetryPeriod, "how often candidates try to take the Lease, and the leader to renew it")
	defaults := bindDefaults(fs, &c.Inject)
	native := fs.Lookup("native-sidecars")
	native.Usage = "the cluster runs native sidecars: mode native is the default, else classic (default: whether the apiserver's version is at least 1.29)"
	native.DefValue = "false" // printed as no default: the default is discovered
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	err := defaults.apply()
	c.DiscoverNative = !defaults.given("native-sidecars")
	return c, errors.Join(err, c.Validate())
}

// Validate reports every problem with c at once, each naming its flag.
func (c WebhookConfig) Validate() error {
	errs := []error{c.Inject.Validate()}
	switch {
	case c.SelfSigned && (c.CertFile != "" || c.KeyFile != ""):
		errs = append(errs, errors.New("--self-signed: the injector makes its own certificate; drop --tls-cert-file and --tls-key-file, or --self-signed"))
	case !c.SelfSigned && (c.CertFile == "" || c.KeyFile == ""):
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file: both are needed, or --self-signed"))
	}
	if c.SelfSigned {
		if c.Certs.Namespace == "" {
			errs = append(errs, errors.New("--namespace: empty: name the injector's namespace (the manifests pass the Pod's)"))
		}
		for _, d := range []struct {
			flag string
			v    time.Duration
			min  time.Duration
		}{{"--cert-validity", c.Certs.CertValidity, 3 * time.Second}, {"--ca-validity", c.Certs.CAValidity, 3 * time.Second},
			{"--secret-poll-interval", c.Certs.PollInterval, 100 * time.Millisecond}, {"--resync-interval", c.Certs.Resync, 100 * time.Millisecond}} {
			if d.v < d.min {
				errs = append(errs, fmt.Errorf("%s: %v is too short: at least %v", d.flag, d.v, d.min))
			}
		}
		// The rules of the leader election (client-go's too), said with the flags.
		if l := c.Lease; l.LeaseDuration <= l.RenewDeadline {
			errs = append(errs, fmt.Errorf("--leader-election-lease-duration: %v must be longer than --leader-election-renew-deadline %v", l.LeaseDuration, l.RenewDeadline))
		}
		if l := c.Lease; float64(l.RenewDeadline) <= 1.2*float64(l.RetryPeriod) || l.RetryPeriod <= 0 {
			errs = append(errs, fmt.Errorf("--leader-election-renew-deadline: %v must be longer than 1.2 × --leader-election-retry-period %v (which must be positive)", l.RenewDeadline, l.RetryPeriod))
		}
		if c.Certs.CAValidity < c.Certs.CertValidity {
			errs = append(errs, fmt.Errorf("--ca-validity: %v is shorter than --cert-validity %v: the CA must outlive the certificates it signs", c.Certs.CAValidity, c.Certs.CertValidity))
		}
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-request-bytes: %d: must be positive", c.MaxRequestBytes))
	}
	return errors.Join(errs...)
}

// runWebhook runs `ramvault webhook` (args without the command) until ctx
// ends, and returns the exit code. Logs are JSON on stderr. client-go's own
// (its REST client's warnings) go through klog, whose logger is
// process-wide: main points it at the same JSON log.
func runWebhook(ctx context.Context, args []string, stderr io.Writer) int {
	c, err := parseWebhookFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ramvault webhook: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	gc := gcPercent(os.Getenv("GOGC"))
	memLimit := memoryLimit(os.Getenv("GOMEMLIMIT"), cgroupMemoryLimitFiles...)
	log.Info("garbage collector", "GOGC", gc, "memoryLimitBytes", memLimit)
	if err := serveWebhook(ctx, c, log); err != nil {
		log.Error("webhook stopped", "err", err)
		return exitInvalid
	}
	return exitOK
}

// defaultGCPercent is the webhook's GOGC unless its environment sets one.
// Every admission allocates about 90 KB (two decodes, the diff, the answer)
// while the live heap stays small (a few MiB), so at Go's default of 100
// the collector runs every few dozen admissions and took a quarter of the
// CPU under load. At 400 it runs a quarter as often, for a heap a few tens
// of MiB at most, well inside the Deployment's 128Mi limit.
const defaultGCPercent = 400

// The container's memory limit: cgroup v2's file, then cgroup v1's (the
// local stack's kubelet runs on cgroup v1, where only the second exists).
var cgroupMemoryLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit sets the Go runtime's soft memory limit to 80% of the
// container's cgroup limit (the first of files that can be read) unless env
// (GOMEMLIMIT, which the runtime has already applied) is set; it returns the
// limit in effect, or -1 for none. GOGC 400 lets the heap grow to five times
// what is live: under a burst the collector must work harder before the
// cgroup kills the replica, not after.
func memoryLimit(env string, files ...string) int64 {
	if env != "" {
		return debug.SetMemoryLimit(-1)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// "max" (v2), or v1's page-rounded MaxInt64: no limit.
		if err != nil || n <= 0 || n >= 1<<62 {
			return -1
		}
		limit := n / 10 * 8
		debug.SetMemoryLimit(limit)
		return limit
	}
	return -1
}

// gcPercent applies defaultGCPercent when env (the GOGC variable, which the
// runtime has already applied) is empty, and returns the GOGC in effect.
func gcPercent(env string) string {
	if env != "" {
		return env
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent)
}

// serveWebhook runs the servers until ctx ends, then shuts them down.
func serveWebhook(ctx context.Context, c WebhookConfig, log *slog.Logger) error {
	rc, err := restConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	client, err := kube.New(rc)
	if err != nil {
		return err
	}
	if c.DiscoverNative {
		native, v, err := nativeSidecars(ctx, client.ServerVersion)
		if err != nil {
			return err
		}
		c.Inject.NativeSidecars = native
		log.Info("native sidecars from the server version", "serverVersion", v, "nativeSidecars", native)
	}
	c.Inject.Version = version.Version

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := admission.NewMetrics(reg)
	instance := identity()
	handler := admission.NewHandler(c.Inject, admission.HandlerOptions{Log: log, Metrics: metrics, MaxBodyBytes: c.MaxRequestBytes})

	var certs servingcert.Source
	if c.SelfSigned {
		ss := c.Certs
		ss.Hosts = serviceHosts(c.ServiceName, ss.Namespace, c.ClusterDomain, c.SANs)
		lease := c.Lease
		lease.Namespace, lease.Identity = ss.Namespace, instance
		elector := meteredElector{leaderelection.New(client, lease, log), metrics}
		certs = servingcert.NewSelfSigned(client, ss, elector, log, metrics.SetCertificateExpiry)
	} else if certs, err = servingcert.NewFiles(c.CertFile, c.KeyFile, log, metrics.SetCertificateExpiry); err != nil {
		return err
	}

	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/mutate", closeWhile(&draining, handler))
	webhook := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       webhookIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ops := http.NewServeMux()
	ops.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	ops.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	ops.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !certs.Ready():
			http.Error(w, servingcert.ErrNoCertificate.Error(), http.StatusServiceUnavailable)
		default:
			io.WriteString(w, "ok\n")
		}
	})
	opsServer := &http.Server{Handler: ops, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	wl, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	ml, err := net.Listen("tcp", c.MetricsAddr)
	if err != nil {
		wl.Close()
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	log.Info("serving", "addr", wl.Addr().String(), "metricsAddr", ml.Addr().String(), "selfSigned", c.SelfSigned,
		"nativeSidecars", c.Inject.NativeSidecars, "version", version.Version)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveUntilShutdown(webhook.ServeTLS(wl, "", "")) })
	g.Go(func() error { return serveUntilShutdown(opsServer.Serve(ml)) })
	g.Go(func() error { return certs.Start(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		// The apiserver keeps its connections to a replica and reuses them
		// whatever the endpoints say (it resolves the Service only when it
		// dials), and it never retries a review on a connection error
		// (client-go retries only GETs): every answer from now on closes its
		// connection (closeWhile), so the apiserver's next review dials a
		// replica that is still an endpoint, and none is in flight here when
		// the process goes (after a forced delete, the kubelet's 2 s minimum
		// grace). Idle connections are not closed here: one closed while the
		// apiserver writes a review on it loses that review (broken pipe, a
		// run of TestTwoReplicasOfARelease lost 1 of 507 so with
		// SetKeepAlivesEnabled(false), which closes them at once); the
		// apiserver takes its most recent idle connection first, so under
		// load each is used, answered and closed within the grace.
		draining.Store(true)
		if ctx.Err() != nil && c.ShutdownDelay > 0 {
			// Stopped by a signal: keep answering while the endpoints
			// controller takes this replica out of the Service.
			log.Info("shutting down: unready, still serving", "delay", c.ShutdownDelay.String())
			time.Sleep(c.ShutdownDelay)
		}
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
		defer cancel()
		return errors.Join(webhook.Shutdown(sctx), opsServer.Shutdown(sctx))
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

// webhookIdleTimeout is how long the webhook keeps an idle connection: longer
// than the apiserver's own idle timeout (client-go takes net/http's default
// transport's, 90 s), so the apiserver always closes an idle connection
// first. A connection the server closes can be the one the apiserver is
// writing its next review on at that moment, and it does not retry a review
// (client-go retries only GETs): with equal timeouts both sides close at
// about the same time, the server a round trip earlier.
const webhookIdleTimeout = 5 * time.Minute

// closeWhile answers every request with Connection: close while draining
// is set: the client does not reuse the connection, and the server closes it
// after the answer.
func closeWhile(draining *atomic.Bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

func serveUntilShutdown(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client (--kubeconfig %q): %w", kubeconfig, err)
	}
	rc.UserAgent = "ramvault-injector/" + version.Version
	return rc, nil
}

// meteredElector sets ramvault_injector_leader while this replica leads.
type meteredElector struct {
	*leaderelection.Elector
	metrics *admission.Metrics
}

func (e meteredElector) Run(ctx context.Context, lead func(context.Context)) {
	e.Elector.Run(ctx, func(ctx context.Context) {
		e.metrics.SetLeader(true)
		defer e.metrics.SetLeader(false)
		lead(ctx)
	})
}

// nativeSidecars asks the apiserver its version (serverVersion, each call
// under its own timeout): native sidecars (init containers with
// restartPolicy Always) are on by default from 1.29.
func nativeSidecars(ctx context.Context, serverVersion func(context.Context) (*apiversion.Info, error)) (bool, string, error) {
	var gitVersion string
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		info, err := serverVersion(ctx)
		if err != nil {
			lastErr = err
			return false, nil
		}
		gitVersion = info.GitVersion
		return true, nil
	})
	if err != nil {
		return false, "", fmt.Errorf("server version (to decide --native-sidecars; set the flag to skip this): %w", errors.Join(err, lastErr))
	}
	v, err := utilversion.ParseGeneric(gitVersion)
	if err != nil {
		return false, gitVersion, fmt.Errorf("server version %q: %w (set --native-sidecars)", gitVersion, err)
	}
	return v.AtLeast(utilversion.MajorMinor(1, 29)), gitVersion, nil
}

// serviceHosts are the names the apiserver may use for the Service, then
// the extra ones.
func serviceHosts(service, ns, domain string, extra []string) []string {
	hosts := []string{service + "." + ns + ".svc", service, service + "." + ns}
	if domain = strings.Trim(domain, "."); domain != "" {
		hosts = append(hosts, service+"."+ns+".svc."+domain)
	}
	return append(hosts, extra...)
}

// identity names this replica: its host name (the Pod's name) and a random
// suffix, unique across restarts.
func identity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ramvault-injector"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "_" + hex.EncodeToString(b)
}
