// Command ramvault-agent is the per-Pod agent (init and sidecar modes): it
// logs in to Vault as the Pod, writes secrets to tmpfs, keeps them fresh,
// reloads the app and revokes everything on SIGTERM. See sidecar.Main.
//
// GOMAXPROCS is set once from the container's CPU limit at start: the Go
// runtime's periodic re-read of the cgroup limit (Go 1.25's default) woke
// every idle agent once a second to read two cgroup files.
//
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ramvault/ramvault/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := sidecar.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
