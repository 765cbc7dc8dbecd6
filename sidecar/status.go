package sidecar

import (
	"encoding/json"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

// status is the shape of the status file beside the secrets: per file its
// dependencies, with paths, versions, lease ends and the next renewal or
// re-read — never values, tokens or lease IDs.
type status struct {
	Ready    bool                  `json:"ready"`
	Degraded bool                  `json:"degraded"`
	Files    map[string]statusFile `json:"files"`
	// Secrets is every Vault request of the Pod by its name (a file's own
	// secret is named after the file).
	Secrets map[string]statusEntry `json:"secrets"`
}

type statusFile struct {
	Written      time.Time     `json:"written,omitzero"`
	Dependencies []statusEntry `json:"dependencies"`
}

type statusEntry struct {
	Name    string    `json:"name,omitempty"` // in a file's dependencies: the key in secrets
	Path    string    `json:"path"`
	Kind    string    `json:"kind"`              // secret or pkiCert
	Method  string    `json:"method"`            // read or write
	Version string    `json:"version,omitempty"` // KV v2 version or certificate serial
	Expires time.Time `json:"expires,omitzero"`
	Next    time.Time `json:"next_refresh,omitzero"` // next renewal, re-issue or re-read
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

func (a *agent) setWritten(file string, t time.Time) {
	a.statusMu.Lock()
	a.written[file] = t
	a.statusMu.Unlock()
}

func (a *agent) setNext(dep string, t time.Time) {
	a.statusMu.Lock()
	changed := !a.next[dep].Equal(t)
	a.next[dep] = t
	a.statusMu.Unlock()
	if changed && a.ready.Load() {
		a.writeStatus()
	}
}

// currentStatus is the status file's document now; the /status endpoint
// (health.go) serves it with more beside it.
func (a *agent) currentStatus() status {
	st := status{Ready: a.ready.Load(), Degraded: a.metrics.isDegraded(), Files: map[string]statusFile{}, Secrets: map[string]statusEntry{}}
	saved := a.store.Secrets()
	a.statusMu.Lock()
	for _, d := range a.graph.deps {
		ss, ok := saved[d.name]
		if !ok {
			continue
		}
		st.Secrets[d.name] = statusEntry{Path: d.path, Kind: d.kind, Method: d.method, Version: ss.Version, Expires: ss.Expires, Next: a.next[d.name], Written: ss.Written, Leased: ss.LeaseID != ""}
	}
	for _, f := range a.graph.files {
		sf := statusFile{Written: a.written[f.secret.Name], Dependencies: []statusEntry{}}
		for _, d := range f.deps {
			e := st.Secrets[d.name]
			e.Name = d.name
			sf.Dependencies = append(sf.Dependencies, e)
		}
		st.Files[f.secret.Name] = sf
	}
	a.statusMu.Unlock()
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
