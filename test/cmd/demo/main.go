// Command demo is `make demo` on the running local stack (see test/demo).
// With -setup-vault it only configures Vault for the example app (the
// README's Helm path) and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ramvault/ramvault/test/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	setup := flag.Bool("setup-vault", false, "only configure Vault for the example app (role, policy, KV secret, database role) and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q (flags: -setup-vault)\n", flag.Arg(0))
		os.Exit(2)
	}
	run := demo.Run
	if *setup {
		run = demo.SetupVault
	}
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
