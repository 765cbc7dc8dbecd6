// Command kubectl-ramvault is the kubectl plugin (`kubectl ramvault status
// pod/NAME`, `inject`, `lint`): put it on the PATH. All logic lives in
// injector/cli and injector/podstatus.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ramvault/ramvault/injector/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.RunKubectlPlugin(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
