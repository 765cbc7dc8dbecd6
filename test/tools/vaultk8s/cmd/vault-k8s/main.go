// Command vault-k8s serves the admission webhook of hashicorp/vault-k8s (the
// module pinned in go.mod) for `make bench-webhook`: the handler of its
// `vault-k8s agent-inject` command, with that command's defaults, its mux,
// its TLS settings and its logger, over HTTPS with a certificate from files.
//
// Its own command cannot start outside a cluster: it insists on the
// in-cluster service-account config (fixed paths under /var/run/secrets)
// and watches the MutatingWebhookConfigurations. Neither takes part in
// answering a review — agentInject.Handler never uses its Clientset — so
// this main leaves them out and keeps everything on the request path.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"
	agentInject "github.com/hashicorp/vault-k8s/agent-inject"
	"github.com/hashicorp/vault-k8s/agent-inject/agent"
)

func main() {
	listen := flag.String("listen", ":8080", "address of the HTTPS server (/mutate)")
	certFile := flag.String("tls-cert-file", "", "serving certificate (PEM)")
	keyFile := flag.String("tls-key-file", "", "key of --tls-cert-file (PEM)")
	vaultAddr := flag.String("vault-address", "", "Vault address injected agents use")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error (as vault-k8s)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *certFile, *keyFile, *vaultAddr, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "vault-k8s:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, certFile, keyFile, vaultAddr, logLevel string) error {
	if certFile == "" || keyFile == "" || vaultAddr == "" {
		return errors.New("--tls-cert-file, --tls-key-file and --vault-address are required")
	}
	crt, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level: unknown level %q", logLevel)
	}
	// As subcommand/injector.Command.Run builds it, with its flags' defaults.
	logger := hclog.New(&hclog.LoggerOptions{Name: "handler", Level: level})
	injector := agentInject.Handler{
		VaultAddress:       vaultAddr,
		VaultAuthType:      agent.DefaultVaultAuthType,
		VaultAuthPath:      agent.DefaultVaultAuthPath,
		ImageVault:         agent.DefaultVaultImage,
		RequireAnnotation:  true,
		Log:                logger,
		UserID:             strconv.Itoa(agent.DefaultAgentRunAsUser),
		GroupID:            strconv.Itoa(agent.DefaultAgentRunAsGroup),
		SameID:             agent.DefaultAgentRunAsSameUser,
		SetSecurityContext: agent.DefaultAgentSetSecurityContext,
		DefaultTemplate:    agent.DefaultTemplateType,
		ResourceRequestCPU: agent.DefaultResourceRequestCPU,
		ResourceRequestMem: agent.DefaultResourceRequestMem,
		ResourceLimitCPU:   agent.DefaultResourceLimitCPU,
		ResourceLimitMem:   agent.DefaultResourceLimitMem,
		ExitOnRetryFailure: agent.DefaultTemplateConfigExitOnRetryFailure,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", injector.Handle)
	mux.HandleFunc("/health/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	server := &http.Server{
		Addr:    listen,
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12, // its --tls-min-version default
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &crt, nil },
		},
		ErrorLog: logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}),
	}
	go func() {
		<-ctx.Done()
		_ = server.Shutdown(context.Background())
	}()
	logger.Info("Starting handler..")
	if err := server.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
