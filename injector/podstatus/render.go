package podstatus

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// agentDoc is the part of the agent's /status document the table shows
// (sidecar/health.go serves it; -o json passes the whole document on).
type agentDoc struct {
	Ready    bool                 `json:"ready"`
	Degraded bool                 `json:"degraded"`
	Secrets  map[string]secretDoc `json:"secrets"`
	Agent    struct {
		Mode         string    `json:"mode"`
		PodMode      string    `json:"pod_mode"`
		Version      string    `json:"version"`
		TokenExpires time.Time `json:"token_expires"`
		LastLogin    *event    `json:"last_login"`
		LastError    *event    `json:"last_error"`
	} `json:"agent"`
}

type secretDoc struct {
	Path        string    `json:"path"`
	Kind        string    `json:"kind"`
	Version     string    `json:"version"`
	Expires     time.Time `json:"expires"`
	Fetched     time.Time `json:"fetched"`
	NextRefresh time.Time `json:"next_refresh"`
	Next        string    `json:"next"`
	Reload      string    `json:"reload"`
	LastRenewal *event    `json:"last_renewal"`
	LastReload  *event    `json:"last_reload"`
	LastError   *event    `json:"last_error"`
}

type event struct {
	At     time.Time `json:"at"`
	Result string    `json:"result"`
	Error  string    `json:"error"`
}

// renderTable writes one Pod's answer: a line for the agent, a row per
// secret, then the full text of each error.
func renderTable(w io.Writer, r Result, now time.Time) error {
	var d agentDoc
	if err := json.Unmarshal(r.Status, &d); err != nil {
		return err
	}
	mode := d.Agent.Mode
	if d.Agent.PodMode != "" {
		mode += " (" + d.Agent.PodMode + ")"
	}
	health := "ready"
	if !d.Ready {
		health = "NOT READY (secrets not all written yet)"
	}
	if d.Degraded {
		health += ", DEGRADED (Vault failing; files as last written)"
	}
	fmt.Fprintf(w, "Pod %s/%s: agent %s, version %s, %s", r.Namespace, r.Pod, mode, d.Agent.Version, health)
	if !d.Agent.TokenExpires.IsZero() {
		fmt.Fprintf(w, ", Vault token expires %s", when(d.Agent.TokenExpires, now))
	}
	fmt.Fprintln(w)
	var notes []string
	if e := d.Agent.LastError; e != nil {
		notes = append(notes, fmt.Sprintf("  login: %s %s: %s", e.Result, ago(e.At, now), e.Error))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECRET\tPATH\tKIND\tFETCHED\tEXPIRES\tNEXT\tLAST RENEWAL\tLAST RELOAD\tLAST ERROR")
	for _, name := range slices.Sorted(maps.Keys(d.Secrets)) {
		s := d.Secrets[name]
		next := "-"
		if !s.NextRefresh.IsZero() {
			next = s.Next + " " + when(s.NextRefresh, now)
		}
		reload := s.Reload
		if e := s.LastReload; e != nil {
			reload += ": " + outcome(e, now)
		}
		lastErr := "-"
		if e := s.LastError; e != nil {
			lastErr = ago(e.At, now) + " (below)"
			notes = append(notes, fmt.Sprintf("  %s: %s", name, e.Error))
		}
		if e := s.LastReload; e != nil && e.Error != "" {
			notes = append(notes, fmt.Sprintf("  %s: reload %s: %s", name, s.Reload, e.Error))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Path, or(s.Kind, "-"), ago(s.Fetched, now),
			or(when(s.Expires, now), "-"), next, outcome(s.LastRenewal, now), or(reload, "-"), lastErr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "Errors:\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// outcome is "ok 5s ago", "FAILED 5s ago" or "-".
func outcome(e *event, now time.Time) string {
	if e == nil {
		return "-"
	}
	if e.Result == "success" {
		return "ok " + ago(e.At, now)
	}
	return "FAILED " + ago(e.At, now)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if d := now.Sub(t); d > 0 {
		return duration.HumanDuration(d) + " ago"
	}
	return "just now"
}

func when(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	if d := t.Sub(now); d > 0 {
		return "in " + duration.HumanDuration(d)
	}
	return "now (due " + ago(t, now) + ")"
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
