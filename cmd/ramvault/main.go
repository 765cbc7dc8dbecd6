// Command ramvault is the injector: the admission webhook server (`ramvault
// webhook`) and the offline CLI (inject, lint, version). All logic lives in
// package injector and its sub-packages; the command line in injector/cli.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/ramvault/ramvault/injector/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// client-go logs through klog, a process-wide logger: JSON on stderr,
	// like the webhook's own log.
	klog.SetSlogLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	code := cli.RunCLI(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
