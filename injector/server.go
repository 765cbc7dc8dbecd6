package injector

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

	"github.com/ramvault/ramvault/injector/kube"
	"github.com/ramvault/ramvault/injector/leaderelection"
	"github.com/ramvault/ramvault/injector/servingcert"
	"github.com/ramvault/ramvault/pkg/version"
)

// webhookOptions are the settings of `ramvault webhook`.
type webhookOptions struct {
	cfg             Config
	discoverNative  bool // --native-sidecars not given: ask the apiserver's version
	addr            string
	metricsAddr     string
	kubeconfig      string
	maxBody         int64
	shutdownDelay   time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level

	certFile, keyFile string
	selfSigned        bool
	service           string
	clusterDomain     string
	sans              []string
	ss                servingcert.SelfSignedOptions
	lease             leaderelection.Config // its Namespace is ss.Namespace
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
func parseWebhookFlags(args []string, stderr io.Writer) (webhookOptions, error) {
	o := webhookOptions{cfg: defaultConfig(), lease: leaderelection.Config{
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}}
	fs := flag.NewFlagSet("ramvault webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), webhookUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.addr, "addr", ":8443", "address of the HTTPS webhook server (/mutate)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":9090", "address of the HTTP server of /metrics, /healthz and /readyz")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: the in-cluster service account")
	fs.Int64Var(&o.maxBody, "max-request-bytes", DefaultMaxBodyBytes, "largest AdmissionReview accepted; a larger one is answered 413")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM, how long to keep serving (unready) while the endpoints drop this replica")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&o.certFile, "tls-cert-file", "", "serving certificate (PEM, chain); reloaded when it changes")
	fs.StringVar(&o.keyFile, "tls-key-file", "", "key of --tls-cert-file (PEM)")
	fs.BoolVar(&o.selfSigned, "self-signed", false, "keep a CA and serving certificate in a Secret, and the caBundle of --webhook-config-name, current")
	fs.StringVar(&o.ss.Namespace, "namespace", "", "namespace of the injector: its Secret and Lease (with --self-signed)")
	fs.StringVar(&o.service, "service-name", "ramvault-injector", "Service of the webhook: the serving certificate is for <service>.<namespace>.svc and the like")
	fs.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain, for the serving certificate's names")
	fs.Var(listFlag{&o.sans}, "tls-san", "comma-separated extra DNS names and IP addresses of the serving certificate")
	fs.StringVar(&o.ss.SecretName, "secret-name", "ramvault-injector-tls", "Secret holding the CA and the serving certificate")
	fs.StringVar(&o.ss.WebhookConfig, "webhook-config-name", "ramvault-injector", "MutatingWebhookConfiguration whose caBundle is kept current")
	fs.StringVar(&o.lease.Name, "lease-name", "ramvault-injector", "Lease of the leader election")
	fs.DurationVar(&o.ss.CertValidity, "cert-validity", 90*24*time.Hour, "validity of the serving certificate; renewed at two thirds")
	fs.DurationVar(&o.ss.CAValidity, "ca-validity", 5*365*24*time.Hour, "validity of the CA; renewed at two thirds")
	fs.DurationVar(&o.ss.PollInterval, "secret-poll-interval", 10*time.Second, "how often every replica reads the Secret")
	fs.DurationVar(&o.ss.Resync, "resync-interval", time.Minute, "how often the leader checks the Secret and the caBundle")
	fs.DurationVar(&o.ss.CAPropagation, "ca-propagation-delay", 10*time.Second, "how long a new CA is in the caBundle before a certificate it signed is served")
	fs.DurationVar(&o.lease.LeaseDuration, "leader-election-lease-duration", o.lease.LeaseDuration, "how long the others wait before taking a Lease its holder stopped renewing")
	fs.DurationVar(&o.lease.RenewDeadline, "leader-election-renew-deadline", o.lease.RenewDeadline, "how long the leader tries to renew the Lease before it stops leading")
	fs.DurationVar(&o.lease.RetryPeriod, "leader-election-retry-period", o.lease.RetryPeriod, "how often candidates try to take the Lease, and the leader to renew it")
	defaults := bindDefaults(fs, &o.cfg)
	native := fs.Lookup("native-sidecars")
	native.Usage = "the cluster runs native sidecars: mode native is the default, else classic (default: whether the apiserver's version is at least 1.29)"
	native.DefValue = "false" // printed as no default: the default is discovered
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	errs := []error{defaults.apply()}
	o.discoverNative = !defaults.given("native-sidecars")
	errs = append(errs, o.cfg.Validate())
	switch {
	case o.selfSigned && (o.certFile != "" || o.keyFile != ""):
		errs = append(errs, errors.New("--self-signed: the injector makes its own certificate; drop --tls-cert-file and --tls-key-file, or --self-signed"))
	case !o.selfSigned && (o.certFile == "" || o.keyFile == ""):
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file: both are needed, or --self-signed"))
	}
	if o.selfSigned {
		if o.ss.Namespace == "" {
			errs = append(errs, errors.New("--namespace: empty: name the injector's namespace (the manifests pass the Pod's)"))
		}
		for _, d := range []struct {
			flag string
			v    time.Duration
			min  time.Duration
		}{{"--cert-validity", o.ss.CertValidity, 3 * time.Second}, {"--ca-validity", o.ss.CAValidity, 3 * time.Second},
			{"--secret-poll-interval", o.ss.PollInterval, 100 * time.Millisecond}, {"--resync-interval", o.ss.Resync, 100 * time.Millisecond}} {
			if d.v < d.min {
				errs = append(errs, fmt.Errorf("%s: %v is too short: at least %v", d.flag, d.v, d.min))
			}
		}
		// The rules of the leader election (client-go's too), said with the flags.
		if l := o.lease; l.LeaseDuration <= l.RenewDeadline {
			errs = append(errs, fmt.Errorf("--leader-election-lease-duration: %v must be longer than --leader-election-renew-deadline %v", l.LeaseDuration, l.RenewDeadline))
		}
		if l := o.lease; float64(l.RenewDeadline) <= 1.2*float64(l.RetryPeriod) || l.RetryPeriod <= 0 {
			errs = append(errs, fmt.Errorf("--leader-election-renew-deadline: %v must be longer than 1.2 × --leader-election-retry-period %v (which must be positive)", l.RenewDeadline, l.RetryPeriod))
		}
		if o.ss.CAValidity < o.ss.CertValidity {
			errs = append(errs, fmt.Errorf("--ca-validity: %v is shorter than --cert-validity %v: the CA must outlive the certificates it signs", o.ss.CAValidity, o.ss.CertValidity))
		}
	}
	if o.maxBody <= 0 {
		errs = append(errs, fmt.Errorf("--max-request-bytes: %d: must be positive", o.maxBody))
	}
	return o, errors.Join(errs...)
}

// RunWebhook runs `ramvault webhook` (args without the command) until ctx
// ends, and returns the exit code. Logs are JSON on stderr. client-go's own
// (its REST client's warnings) go through klog, whose logger is
// process-wide: main points it at the same JSON log.
func RunWebhook(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parseWebhookFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ramvault webhook: %v\n", err)
		return ExitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	gc := gcPercent(os.Getenv("GOGC"))
	log.Info("garbage collector", "GOGC", gc)
	if err := serveWebhook(ctx, o, log); err != nil {
		log.Error("webhook stopped", "err", err)
		return ExitInvalid
	}
	return ExitOK
}

// DefaultGCPercent is the webhook's GOGC unless its environment sets one.
// Every admission allocates about 90 KB (two decodes, the diff, the answer)
// while the live heap stays small (a few MiB), so at Go's default of 100
// the collector runs every few dozen admissions and took a quarter of the
// CPU under load. At 400 it runs a quarter as often, for a heap a few tens
// of MiB at most, well inside the Deployment's 128Mi limit.
const DefaultGCPercent = 400

// gcPercent applies DefaultGCPercent when env (the GOGC variable, which the
// runtime has already applied) is empty, and returns the GOGC in effect.
func gcPercent(env string) string {
	if env != "" {
		return env
	}
	debug.SetGCPercent(DefaultGCPercent)
	return strconv.Itoa(DefaultGCPercent)
}

// serveWebhook runs the servers until ctx ends, then shuts them down.
func serveWebhook(ctx context.Context, o webhookOptions, log *slog.Logger) error {
	rc, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kube.New(rc)
	if err != nil {
		return err
	}
	if o.discoverNative {
		native, v, err := nativeSidecars(ctx, client.ServerVersion)
		if err != nil {
			return err
		}
		o.cfg.NativeSidecars = native
		log.Info("native sidecars from the server version", "serverVersion", v, "nativeSidecars", native)
	}
	o.cfg.Version = version.Version

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	instance := identity()
	events := NewEventRecorder(client, log, instance)
	handler := NewHandler(o.cfg, HandlerOptions{Log: log, Metrics: metrics, Events: events, MaxBodyBytes: o.maxBody})

	var certs servingcert.Source
	if o.selfSigned {
		ss := o.ss
		ss.Hosts = serviceHosts(o.service, ss.Namespace, o.clusterDomain, o.sans)
		lease := o.lease
		lease.Namespace, lease.Identity = ss.Namespace, instance
		elector := meteredElector{leaderelection.New(client, lease, log), metrics}
		certs = servingcert.NewSelfSigned(client, ss, elector, log, metrics.certificate)
	} else if certs, err = servingcert.NewFiles(o.certFile, o.keyFile, log, metrics.certificate); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/mutate", handler)
	webhook := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var draining atomic.Bool
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

	wl, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	ml, err := net.Listen("tcp", o.metricsAddr)
	if err != nil {
		wl.Close()
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	log.Info("serving", "addr", wl.Addr().String(), "metricsAddr", ml.Addr().String(), "selfSigned", o.selfSigned,
		"nativeSidecars", o.cfg.NativeSidecars, "version", version.Version)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveUntilShutdown(webhook.ServeTLS(wl, "", "")) })
	g.Go(func() error { return serveUntilShutdown(opsServer.Serve(ml)) })
	g.Go(func() error { events.Run(gctx); return nil })
	g.Go(func() error { return certs.Start(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		draining.Store(true)
		if ctx.Err() != nil && o.shutdownDelay > 0 {
			// Stopped by a signal: keep answering while the endpoints
			// controller takes this replica out of the Service.
			log.Info("shutting down: unready, still serving", "delay", o.shutdownDelay.String())
			time.Sleep(o.shutdownDelay)
		}
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		return errors.Join(webhook.Shutdown(sctx), opsServer.Shutdown(sctx))
	})
	err = g.Wait()
	log.Info("stopped")
	return err
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
	metrics *Metrics
}

func (e meteredElector) Run(ctx context.Context, lead func(context.Context)) {
	e.Elector.Run(ctx, func(ctx context.Context) {
		e.metrics.leading(true)
		defer e.metrics.leading(false)
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
