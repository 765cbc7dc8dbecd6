package sidecar

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// metrics is the agent's Prometheus exposition, written by hand to keep the
// binary small (no client library). Never a secret value in a label.
type metrics struct {
	mu       sync.Mutex
	counters map[string]float64 // full series name with labels -> value
	expiry   map[string]time.Time
	degraded bool
	now      func() time.Time
	// last is when each observation last happened and how it went, by
	// what (see eventKey): what the /status endpoint tells (health.go).
	last map[eventKey]event
}

func newMetrics(now func() time.Time) *metrics {
	return &metrics{counters: map[string]float64{}, expiry: map[string]time.Time{}, now: now, last: map[eventKey]event{}}
}

// observe counts series and records the event under key.
func (m *metrics) observe(series string, key eventKey, err error) {
	m.mu.Lock()
	m.counters[series]++
	m.last[key] = newEvent(m.now(), err)
	if err != nil && key.kind != "reload" { // a secret's (or the login's) last error
		m.last[eventKey{"error", key.name}] = m.last[key]
	}
	m.mu.Unlock()
}

func (m *metrics) inc(series string) {
	m.mu.Lock()
	m.counters[series]++
	m.mu.Unlock()
}

func result(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

func (m *metrics) fetch(secret string, err error) {
	m.observe(fmt.Sprintf(`ramvault_agent_fetches_total{secret=%q,result=%q}`, secret, result(err)), eventKey{"fetch", secret}, err)
}
func (m *metrics) renewal(secret string, err error) {
	m.observe(fmt.Sprintf(`ramvault_agent_lease_renewals_total{secret=%q,result=%q}`, secret, result(err)), eventKey{"renewal", secret}, err)
}
func (m *metrics) write(secret string) {
	m.inc(fmt.Sprintf(`ramvault_agent_file_writes_total{secret=%q}`, secret))
}

// writeFailed counts a file that could not be written (a full tmpfs) and
// makes err the last error of each dependency it renders, for /status.
func (m *metrics) writeFailed(file string, deps []string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters[fmt.Sprintf(`ramvault_agent_file_write_failures_total{secret=%q}`, file)]++
	e := newEvent(m.now(), err)
	for _, d := range deps {
		m.last[eventKey{"error", d}] = e
	}
}
func (m *metrics) reload(kind string, err error) {
	m.observe(fmt.Sprintf(`ramvault_agent_reloads_total{kind=%q,result=%q}`, kind, result(err)), eventKey{"reload", kind}, err)
}
func (m *metrics) login(err error) {
	m.observe(fmt.Sprintf(`ramvault_agent_logins_total{result=%q}`, result(err)), eventKey{"login", ""}, err)
}

// events is a copy of the last events.
func (m *metrics) events() map[eventKey]event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.last)
}
func (m *metrics) setExpiry(secret string, t time.Time) {
	m.mu.Lock()
	if t.IsZero() {
		delete(m.expiry, secret)
	} else {
		m.expiry[secret] = t
	}
	m.mu.Unlock()
}

// setDegraded records whether Vault is failing the agent; it reports
// whether that changed.
func (m *metrics) setDegraded(d bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.degraded != d
	m.degraded = d
	return changed
}

func (m *metrics) isDegraded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.degraded
}

// counterHelp is each counter's HELP line, by name (sorted).
func counterHelp() [][2]string {
	return [][2]string{
		{"ramvault_agent_fetches_total", "Secrets fetched from Vault, by secret and result."},
		{"ramvault_agent_file_write_failures_total", "Secret files that could not be written (the tmpfs full), by attempt."},
		{"ramvault_agent_file_writes_total", "Secret files written (unchanged content is not rewritten)."},
		{"ramvault_agent_lease_renewals_total", "Lease renewals, by secret and result."},
		{"ramvault_agent_logins_total", "Vault logins, by result."},
		{"ramvault_agent_reloads_total", "App reloads, by kind and result."},
	}
}

func (m *metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	m.writeTo(w)
}

func (m *metrics) writeTo(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := map[string][]string{}
	for s := range m.counters {
		name := s[:strings.IndexByte(s+"{", '{')]
		byName[name] = append(byName[name], s)
	}
	for _, c := range counterHelp() {
		n := c[0]
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", n, c[1], n)
		series := byName[n]
		sort.Strings(series)
		for _, s := range series {
			fmt.Fprintf(w, "%s %g\n", s, m.counters[s])
		}
	}
	fmt.Fprint(w, "# HELP ramvault_agent_seconds_to_expiry Seconds until each secret's lease or certificate ends.\n# TYPE ramvault_agent_seconds_to_expiry gauge\n")
	secrets := make([]string, 0, len(m.expiry))
	for s := range m.expiry {
		secrets = append(secrets, s)
	}
	sort.Strings(secrets)
	now := m.now()
	for _, s := range secrets {
		fmt.Fprintf(w, "ramvault_agent_seconds_to_expiry{secret=%q} %g\n", s, m.expiry[s].Sub(now).Seconds())
	}
	d := 0
	if m.degraded {
		d = 1
	}
	fmt.Fprintf(w, "# HELP ramvault_agent_degraded 1 while Vault cannot be reached or refuses; the files stay as last written.\n# TYPE ramvault_agent_degraded gauge\nramvault_agent_degraded %d\n", d)
}
