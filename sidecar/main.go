package sidecar

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/version"
)

// Main is the whole command line of ramvault-agent; it returns the exit code.
// Run by hand (debugging, outside Kubernetes):
//
//	ramvault-agent --mode=sidecar --vault-addr=http://127.0.0.1:8200 \
//	  --vault-token-file=~/.vault-token --annotations=./annotations \
//	  --secrets-dir=/dev/shm/secrets --state-dir=/dev/shm/state
//
// where ./annotations holds lines like ramvault.io/secret-db="database/creds/app".
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "version" || args[0] == "--version") {
		fmt.Fprintln(stderr, version.String("ramvault-agent"))
		return 0
	}
	if len(args) > 0 && args[0] == spec.AgentSleep {
		return sleepFor(ctx, args[1:], stderr)
	}
	if len(args) > 0 && args[0] == spec.AwaitStartup {
		return awaitStartup(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ramvault-agent:", err)
		return 2
	}
	a, err := newAgent(cfg)
	if err != nil {
		cfg.Log.Error("cannot start", "err", err)
		return 2
	}
	if err := a.Run(ctx); err != nil {
		cfg.Log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var annotations, logFormat string
	fs := flag.NewFlagSet("ramvault-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Mode, spec.FlagMode, modeSidecar, "init: write every secret once and exit; sidecar: keep them fresh until SIGTERM, then revoke")
	fs.StringVar(&c.VaultAddr, spec.FlagVaultAddr, "", "Vault address (ramvault.io/vault-addr wins)")
	fs.StringVar(&c.CACert, spec.FlagVaultCACert, "", "PEM file of the CA that signs Vault's certificate (default: system roots)")
	fs.StringVar(&c.TLSServerName, spec.FlagVaultTLSName, "", "server name to verify Vault's certificate against")
	fs.StringVar(&c.VaultNamespace, "vault-namespace", "", "Vault Enterprise namespace (ramvault.io/vault-namespace wins)")
	fs.StringVar(&c.AuthPath, "auth-path", "kubernetes", "mount path of Vault's Kubernetes auth (ramvault.io/auth-path wins)")
	fs.StringVar(&c.Role, spec.FlagRole, "", "Vault role (ramvault.io/role wins)")
	fs.StringVar(&c.TokenFile, spec.FlagTokenFile, spec.AgentTokenDir+"/token", "projected service-account token to log in with")
	fs.StringVar(&c.VaultTokenFile, "vault-token-file", "", "debugging: use the Vault token in this file instead of logging in (it is not revoked)")
	fs.StringVar(&c.SecretsDir, spec.FlagSecretsDir, spec.AgentSecretsDir, "tmpfs directory the secret files go to")
	fs.StringVar(&c.StateDir, spec.FlagStateDir, spec.AgentStateDir, "agent-only tmpfs directory for the token and leases")
	var frozen string
	fs.StringVar(&frozen, spec.FlagSpec, "", "the ramvault.io/ annotations as a JSON object, as the injector checked them at admission (it sets this flag; the Pod's live annotations are never read)")
	fs.StringVar(&annotations, spec.FlagAnnotations, "", "instead of --spec (running by hand): file of ramvault.io/ annotations, one key=\"value\" per line (the downward-API format)")
	fs.StringVar(&c.SignalProcess, spec.FlagSignalProcess, "", "process to signal for reload signal:<SIG> (ramvault.io/signal-process wins)")
	fs.StringVar(&c.SignalMountPath, spec.FlagSignalMountPath, "", "instead of --"+spec.FlagSignalProcess+": for reload signal:<SIG>, signal the main process of each container that mounts the secrets volume at this path (the injector sets it when it knows no process name)")
	fs.StringVar(&c.HealthAddr, "health-addr", fmt.Sprintf(":%d", spec.AgentHealthPort), "health, startup and restart-probe endpoints (sidecar mode; empty disables)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", fmt.Sprintf(":%d", spec.AgentMetricsPort), "Prometheus metrics (sidecar mode; empty disables)")
	fs.DurationVar(&c.InitDeadline, "init-deadline", 2*time.Minute, "init mode: give up (exit 1) if the secrets are not written by then")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 10*time.Second, "time allowed to revoke leases and the token after SIGTERM")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 10*time.Second, "timeout of each Vault call")
	fs.StringVar(&logFormat, "log-format", "json", "json or text")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.SignalProcess != "" && c.SignalMountPath != "" {
		return c, fmt.Errorf("give --%s or --%s, not both", spec.FlagSignalProcess, spec.FlagSignalMountPath)
	}
	var h slog.Handler = slog.NewJSONHandler(stderr, nil)
	if logFormat == "text" {
		h = slog.NewTextHandler(stderr, nil)
	} else if logFormat != "json" {
		return c, fmt.Errorf("--log-format %q: want json or text", logFormat)
	}
	c.Log = slog.New(h).With("mode", c.Mode)
	c.Harden = true

	raw, source, err := readAnnotations(frozen, annotations)
	if err != nil {
		return c, err
	}
	sp, err := spec.Parse(raw)
	if err != nil {
		return c, fmt.Errorf("annotations in %s: %w", source, err)
	}
	c.Spec = sp
	// Explicit annotations win over the flags the injector set.
	set := func(name string, dst *string, v string) {
		if _, ok := raw[spec.Prefix+name]; ok {
			*dst = v
		}
	}
	set("vault-addr", &c.VaultAddr, sp.VaultAddr)
	set("vault-namespace", &c.VaultNamespace, sp.VaultNamespace)
	set("auth-path", &c.AuthPath, sp.AuthPath)
	set("role", &c.Role, sp.Role)
	set("signal-process", &c.SignalProcess, sp.SignalProcess)
	if c.SignalProcess != "" {
		c.SignalMountPath = "" // the Pod named its process
	}
	return c, nil
}

// readAnnotations returns the annotations of --spec (what the injector
// validated, frozen in the container's arguments, which cannot change once
// the Pod exists) or of the --annotations file (running by hand), and where
// they came from.
func readAnnotations(frozen, file string) (map[string]string, string, error) {
	switch {
	case frozen != "" && file != "":
		return nil, "", fmt.Errorf("give --%s or --%s, not both", spec.FlagSpec, spec.FlagAnnotations)
	case frozen != "":
		raw, err := spec.DecodeFrozen(frozen)
		if err != nil {
			return nil, "", fmt.Errorf("--%s: %w", spec.FlagSpec, err)
		}
		return raw, "--" + spec.FlagSpec, nil
	case file == "":
		return nil, "", fmt.Errorf("no annotations: give --%s (the injector does) or --%s FILE", spec.FlagSpec, spec.FlagAnnotations)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("--%s: %w", spec.FlagAnnotations, err)
	}
	defer f.Close()
	raw, err := spec.ParseAnnotationsFile(f)
	if err != nil {
		return nil, "", fmt.Errorf("--%s %s: %w", spec.FlagAnnotations, file, err)
	}
	return raw, file, nil
}
