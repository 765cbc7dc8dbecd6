// Package sidecar is the per-Pod agent: log in to Vault as the Pod, fetch,
// render, write to tmpfs, renew, rotate, revoke, reload. Main is its whole
// command line. The agent's loops live here, one concern per file (token.go,
// secrets.go, retry.go, status.go, health.go); the Vault client, the file
// formats, the reloaders, the saved state and the clock are the
// sub-packages vault, render, reload, state and clock.
package sidecar
