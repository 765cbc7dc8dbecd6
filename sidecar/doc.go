// Package sidecar is the per-Pod agent: log in to Vault as the Pod, fetch,
// render, write to tmpfs, renew, rotate, revoke, reload.
package sidecar
