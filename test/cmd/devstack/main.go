// Command devstack brings the local test stack up or down (make dev-up /
// make dev-down) and reports leftovers.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ramvault/ramvault/test/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: devstack up|down|status|leftovers")
		os.Exit(2)
	}
	if err := stack.Command(ctx, os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}
