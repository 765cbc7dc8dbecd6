package sidecar

import (
	"encoding/json"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

// status is the shape of the status file beside the secrets: names,
// versions, lease ends — never values.
type status struct {
	Ready    bool                   `json:"ready"`
	Degraded bool                   `json:"degraded"`
	Secrets  map[string]statusEntry `json:"secrets"`
}

type statusEntry struct {
	Path    string    `json:"path"`
	Version string    `json:"version,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Written time.Time `json:"written"`
	Leased  bool      `json:"leased"`
}

// setDegraded records whether Vault is failing the agent, in the metrics
// and, when that changed, in the status file. (The status file was written
// only when a secret changed, i.e. while things were fine; a success after
// failures wrote it from inside the attempt, before the retry cleared the
// flag: it said degraded when all was well, and not when Vault was down.)
func (a *agent) setDegraded(d bool) {
	if a.metrics.setDegraded(d) {
		a.writeStatus()
	}
}

// currentStatus is the status file's document now; the /status endpoint
// (health.go) serves it with more beside it.
func (a *agent) currentStatus() status {
	st := status{Ready: a.ready.Load(), Degraded: a.metrics.isDegraded(), Secrets: map[string]statusEntry{}}
	for n, ss := range a.store.Secrets() {
		st.Secrets[n] = statusEntry{Path: ss.Path, Version: ss.Version, Expires: ss.Expires, Written: ss.Written, Leased: ss.LeaseID != ""}
	}
	return st
}

// writeStatus writes the status file.
func (a *agent) writeStatus() {
	b, err := json.MarshalIndent(a.currentStatus(), "", "  ")
	if err == nil {
		_, err = a.files.Write(spec.StatusFile, append(b, '\n'), 0o400)
	}
	if err != nil {
		a.log.Warn("writing the status file failed", "err", err)
	}
}
