// Command ramvault is the injector: the offline CLI (inject, lint, version)
// and, next, the admission webhook server. All logic lives in package injector.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ramvault/ramvault/injector"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := injector.RunCLI(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
