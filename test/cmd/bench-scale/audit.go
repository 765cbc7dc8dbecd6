package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// The kinds of Vault request the bench counts, in the order it prints them.
var kinds = []string{"login", "read", "renew", "lookup", "revoke", "other"}

// phase of a Pod's life a request fell in.
type phase int

const (
	startup  phase = iota // Deployment created → window start (every Pod Ready)
	steady                // the window
	shutdown              // after the window: the Deployment deleted
	phases
)

var phaseNames = [phases]string{"start-up", "window", "shutdown"}

// auditEntry is what the bench reads of one line of Vault's file audit
// device (the response entries: one per request, with its outcome).
type auditEntry struct {
	Time  time.Time `json:"time"`
	Type  string    `json:"type"`
	Error string    `json:"error"`
	Auth  struct {
		Metadata map[string]string `json:"metadata"`
	} `json:"auth"`
	Request struct {
		Operation string `json:"operation"`
		Path      string `json:"path"`
	} `json:"request"`
	Response struct {
		Auth struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"auth"`
	} `json:"response"`
}

// namespace is the Kubernetes namespace of the service account whose token
// made the request, or that logged in.
func (e *auditEntry) namespace() string {
	if ns := e.Auth.Metadata["service_account_namespace"]; ns != "" {
		return ns
	}
	return e.Response.Auth.Metadata["service_account_namespace"]
}

// kind classifies a request by its path and operation.
func kind(operation, path string) string {
	switch {
	case strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login"):
		return "login"
	case path == "auth/token/renew-self", path == "auth/token/renew", strings.HasPrefix(path, "sys/leases/renew"), strings.HasPrefix(path, "sys/renew"):
		return "renew"
	case path == "auth/token/lookup-self", path == "auth/token/lookup", strings.HasPrefix(path, "sys/leases/lookup"),
		strings.HasPrefix(path, "sys/internal/ui/mounts"), path == "sys/mounts":
		return "lookup"
	case path == "auth/token/revoke-self", path == "auth/token/revoke", strings.HasPrefix(path, "sys/leases/revoke"), strings.HasPrefix(path, "sys/revoke"):
		return "revoke"
	case operation == "read" || operation == "list":
		return "read"
	}
	return "other"
}

// tally is one side's Vault traffic in one run, by phase and kind.
type tally struct {
	requests [phases]map[string]int
	errors   [phases]int
	dbRoles  [phases]int // successful reads of database/creds/…: a PostgreSQL role each
	// failures counts the requests answered with an error by phase, path
	// (its first three segments) and the error's first line.
	failures map[string]int
}

func newTally() *tally {
	t := &tally{failures: map[string]int{}}
	for p := range t.requests {
		t.requests[p] = map[string]int{}
	}
	return t
}

// total is the requests of phase p, every kind.
func (t *tally) total(p phase) int {
	n := 0
	for _, c := range t.requests[p] {
		n += c
	}
	return n
}

// readAudit counts the response entries of namespace ns, each in the phase
// its time falls in (windowStart and windowEnd bound the steady phase).
// Requests of other namespaces (other tests, the bench's own root token)
// are left out.
func readAudit(r io.Reader, ns string, windowStart, windowEnd time.Time) (*tally, error) {
	t := newTally()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log line %d: %w", line, err)
		}
		if e.Type != "response" || e.namespace() != ns {
			continue
		}
		p := steady
		switch {
		case !e.Time.After(windowStart):
			p = startup
		case e.Time.After(windowEnd):
			p = shutdown
		}
		if e.Error != "" {
			t.errors[p]++
			msg := strings.Join(strings.Fields(e.Error), " ") // "1 error occurred: * permission denied"
			if len(msg) > 100 {
				msg = msg[:100] + "…"
			}
			segs := strings.SplitN(e.Request.Path, "/", 4)
			t.failures[fmt.Sprintf("%s %s %s: %s", phaseNames[p], e.Request.Operation, strings.Join(segs[:min(3, len(segs))], "/"), msg)]++
		}
		t.requests[p][kind(e.Request.Operation, e.Request.Path)]++
		if e.Error == "" && e.Request.Operation == "read" && strings.HasPrefix(e.Request.Path, "database/creds/") {
			t.dbRoles[p]++
		}
	}
	return t, sc.Err()
}
