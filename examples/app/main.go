// Command example-app is the app of ramvault's examples and of its end-to-end
// tests: it reads a KV file and PostgreSQL credentials that the ramvault agent
// writes on tmpfs, logs in to PostgreSQL with them, and does it again on every
// reload (SIGHUP or POST /reload). GET /status reports what it sees — counters,
// a fingerprint of the credentials, the files' size, mode, owner and
// filesystem — and never a secret value.
//
//	example-app -secrets-dir /var/run/secrets/ramvault -db-file db -config-file config -listen :8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

// run parses flags, builds the app and serves until ctx ends. It returns the
// process exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "example-app:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{}))
	connect, err := pgConnector(cfg.DB)
	if err != nil {
		log.Error("database settings", "err", err)
		return 2
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := New(cfg, connect, log).ListenAndServe(ctx, hup); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	return 0
}

// parseFlags turns the command line into a Config; getenv supplies the
// defaults of the (non-secret) PostgreSQL address: PGHOST, PGPORT, PGDATABASE,
// PGSSLMODE.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var c Config
	fs := flag.NewFlagSet("example-app", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.SecretsDir, "secrets-dir", "/var/run/secrets/ramvault", "directory of the secret files (the injector's ramvault.io/mount-path)")
	fs.StringVar(&c.DBFile, "db-file", "db", "file in -secrets-dir with the PostgreSQL credentials: JSON with \"username\" and \"password\" (the agent's default rendering of database/creds/<role>); empty: no database")
	fs.StringVar(&c.ConfigFile, "config-file", "config", "file in -secrets-dir with the app's KV secret (only fingerprinted, never parsed or shown); empty: none")
	fs.StringVar(&c.Listen, "listen", ":8080", "address of the HTTP server: GET /status, GET /healthz, POST /reload")
	fs.StringVar(&c.TLS.Cert, "tls-cert", "", "file in -secrets-dir with the PEM certificate to serve on -tls-listen (reloaded with the rest); empty: no TLS server")
	fs.StringVar(&c.TLS.Key, "tls-key", "tls.key", "file in -secrets-dir with the PEM private key of -tls-cert")
	fs.StringVar(&c.TLS.CA, "tls-ca", "ca.crt", "file in -secrets-dir with the PEM CA the certificate must chain to (checked at each reload, reported in GET /status)")
	fs.StringVar(&c.TLS.Listen, "tls-listen", ":8443", "address of the TLS server (the same handler) when -tls-cert is set")
	fs.StringVar(&c.DB.Host, "pg-host", env("PGHOST", "localhost"), "PostgreSQL host (default $PGHOST, else localhost)")
	fs.StringVar(&c.DB.Port, "pg-port", env("PGPORT", "5432"), "PostgreSQL port (default $PGPORT, else 5432)")
	fs.StringVar(&c.DB.Database, "pg-database", env("PGDATABASE", "postgres"), "PostgreSQL database (default $PGDATABASE, else postgres)")
	fs.StringVar(&c.DB.SSLMode, "pg-sslmode", env("PGSSLMODE", "prefer"), "PostgreSQL sslmode (default $PGSSLMODE, else prefer)")
	fs.DurationVar(&c.DB.Timeout, "pg-timeout", 5*time.Second, "time allowed for each login")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.SecretsDir == "" {
		return c, errors.New("-secrets-dir must not be empty")
	}
	for _, f := range []struct{ flag, v string }{{"-db-file", c.DBFile}, {"-config-file", c.ConfigFile}, {"-tls-cert", c.TLS.Cert}, {"-tls-key", c.TLS.Key}, {"-tls-ca", c.TLS.CA}} {
		if !validName(f.v) {
			return c, fmt.Errorf("%s %q: a file name in -secrets-dir, without /", f.flag, f.v)
		}
	}
	if c.DB.Timeout <= 0 {
		return c, errors.New("-pg-timeout must be positive")
	}
	return c, nil
}
