package sidecar

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/clock"
)

// Modes of the agent.
const (
	modeInit    = "init"
	modeSidecar = "sidecar"
)

// config is everything the agent needs; Main builds it from flags and the
// Pod's annotations.
type config struct {
	Mode           string
	VaultAddr      string
	CACert         string
	TLSServerName  string
	VaultNamespace string
	AuthPath       string
	Role           string
	TokenFile      string // projected service-account token (Kubernetes auth)
	VaultTokenFile string // instead of logging in, use this Vault token (debugging by hand)
	SecretsDir     string
	StateDir       string
	Spec           *spec.Annotations
	SignalProcess  string
	// SignalMountPath, instead of SignalProcess: signal the main process
	// of each container that mounts the secrets volume there.
	SignalMountPath string
	HealthAddr      string // "" disables the health server
	MetricsAddr     string // "" disables metrics
	CallTimeout     time.Duration
	InitDeadline    time.Duration
	ShutdownGrace   time.Duration
	Log             *slog.Logger
	Harden          bool // mlockall, not dumpable, umask 077 (process-wide; off in tests)

	// Clock is every wait and timestamp of the agent (a fake in tests).
	Clock clock.Clock
}

func (c *config) defaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.InitDeadline == 0 {
		c.InitDeadline = 2 * time.Minute
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.AuthPath == "" {
		c.AuthPath = "kubernetes"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
}

// validate reports every problem at once, each naming the flag to set.
func (c *config) validate() error {
	var errs []error
	if c.Mode != modeInit && c.Mode != modeSidecar {
		errs = append(errs, fmt.Errorf("--mode %q: want init or sidecar", c.Mode))
	}
	if c.VaultAddr == "" {
		errs = append(errs, errors.New("--vault-addr is required (or ramvault.io/vault-addr)"))
	}
	if c.VaultTokenFile == "" && (c.TokenFile == "" || c.Role == "") {
		errs = append(errs, errors.New("--token-file and --role are required to log in (or --vault-token-file when debugging)"))
	}
	if c.SecretsDir == "" {
		errs = append(errs, errors.New("--secrets-dir is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.SignalProcess != "" && c.SignalMountPath != "" {
		errs = append(errs, fmt.Errorf("give --%s or --%s, not both", spec.FlagSignalProcess, spec.FlagSignalMountPath))
	}
	if p := c.SignalMountPath; p != "" && !strings.HasPrefix(p, "/") {
		errs = append(errs, fmt.Errorf("--%s %q: want an absolute path (the secrets volume's mount path in the app containers)", spec.FlagSignalMountPath, p))
	}
	if c.Spec == nil || len(c.Spec.Secrets) == 0 {
		errs = append(errs, errors.New("no secrets configured: give --annotations a file with ramvault.io/secret-<name> entries"))
	}
	return errors.Join(errs...)
}
