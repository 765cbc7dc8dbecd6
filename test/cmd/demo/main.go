// Command demo shows, on the running local stack, what ramvault builds on: a
// Pod whose Memory emptyDir is a tmpfs. The agent and injector replace this
// with the full demo.
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
	if err := stack.Demo(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
