package sidecar

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The exposition keeps its names, order and shape (dashboards use them).
func TestMetricsExposition(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	m := newMetrics(func() time.Time { return now })
	m.fetch("db", nil)
	m.fetch("db", errors.New("x"))
	m.renewal("db", nil)
	m.write("db")
	m.writeFailed("db", []string{"db"}, errors.New("write db: no space left on the secrets volume"))
	m.reload("signal", nil)
	m.login(nil)
	m.setExpiry("db", now.Add(90*time.Second))
	m.setDegraded(true)
	var b strings.Builder
	m.writeTo(&b)
	want := `# HELP ramvault_agent_fetches_total Secrets fetched from Vault, by secret and result.
# TYPE ramvault_agent_fetches_total counter
ramvault_agent_fetches_total{secret="db",result="failure"} 1
ramvault_agent_fetches_total{secret="db",result="success"} 1
# HELP ramvault_agent_file_write_failures_total Secret files that could not be written (the tmpfs full), by attempt.
# TYPE ramvault_agent_file_write_failures_total counter
ramvault_agent_file_write_failures_total{secret="db"} 1
# HELP ramvault_agent_file_writes_total Secret files written (unchanged content is not rewritten).
# TYPE ramvault_agent_file_writes_total counter
ramvault_agent_file_writes_total{secret="db"} 1
# HELP ramvault_agent_lease_renewals_total Lease renewals, by secret and result.
# TYPE ramvault_agent_lease_renewals_total counter
ramvault_agent_lease_renewals_total{secret="db",result="success"} 1
# HELP ramvault_agent_logins_total Vault logins, by result.
# TYPE ramvault_agent_logins_total counter
ramvault_agent_logins_total{result="success"} 1
# HELP ramvault_agent_reloads_total App reloads, by kind and result.
# TYPE ramvault_agent_reloads_total counter
ramvault_agent_reloads_total{kind="signal",result="success"} 1
# HELP ramvault_agent_seconds_to_expiry Seconds until each secret's lease or certificate ends.
# TYPE ramvault_agent_seconds_to_expiry gauge
ramvault_agent_seconds_to_expiry{secret="db"} 90
# HELP ramvault_agent_degraded 1 while Vault cannot be reached or refuses; the files stay as last written.
# TYPE ramvault_agent_degraded gauge
ramvault_agent_degraded 1
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if e := m.events()[eventKey{"error", "db"}]; !strings.Contains(e.err, "no space left") {
		t.Errorf("the failed write is not db's last error: %+v", e)
	}
}
