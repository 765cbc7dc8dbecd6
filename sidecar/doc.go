// Package sidecar is the per-Pod agent: log in, fetch, render, write to
// tmpfs, renew, rotate, revoke, reload. (Next issue.)
package sidecar
