package main

import (
	"bytes"
	"encoding/xml"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReadAuditCountsOneSideByPhaseAndKind(t *testing.T) {
	f, err := os.Open("testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	got, err := readAudit(f, "bench-scale-ramvault", at("2026-12-02T17:00:30Z"), at("2026-12-02T17:03:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	// The request entry, the other side's and the root token's are left out.
	want := [phases]map[string]int{
		startup:  {"login": 1, "read": 2},
		steady:   {"renew": 2, "read": 1, "lookup": 1},
		shutdown: {"revoke": 1},
	}
	for p := range want {
		if len(got.requests[p]) != len(want[p]) {
			t.Errorf("phase %d: got %v, want %v", p, got.requests[p], want[p])
		}
		for k, n := range want[p] {
			if got.requests[p][k] != n {
				t.Errorf("phase %d, %s: got %d, want %d (all: %v)", p, k, got.requests[p][k], n, got.requests[p])
			}
		}
	}
	if got.dbRoles != [phases]int{1, 0, 0} {
		t.Errorf("database roles by phase: got %v, want one at start-up (the refused read creates none)", got.dbRoles)
	}
	if got.errors != [phases]int{0, 1, 0} {
		t.Errorf("errors by phase: got %v", got.errors)
	}
	if f := got.failures; len(f) != 1 || f["window read database/creds/bench-scale-ramvault: 1 error occurred: * permission denied"] != 1 {
		t.Errorf("failures: got %v", f)
	}
	other, err := readAudit(strings.NewReader(mustRead(t, "testdata/audit.log")), "bench-scale-vault-k8s", at("2026-12-02T17:00:30Z"), at("2026-12-02T17:03:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if other.requests[startup]["read"] != 1 || other.requests[startup]["lookup"] != 1 || other.dbRoles[startup] != 1 {
		t.Errorf("vault-k8s side: got %v, roles %v", other.requests, other.dbRoles)
	}
}

func TestReadAuditNamesTheLineItCannotRead(t *testing.T) {
	_, err := readAudit(strings.NewReader("{\"type\":\"response\"}\nnot json\n"), "ns", time.Now(), time.Now())
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v, want an error naming line 2", err)
	}
}

func TestKindOfEveryAgentRequest(t *testing.T) {
	for _, c := range []struct{ op, path, want string }{
		{"update", "auth/kubernetes/login", "login"},
		{"update", "auth/jwt/login", "login"},
		{"read", "secret/data/a", "read"},
		{"read", "database/creds/r", "read"},
		{"update", "sys/leases/renew", "renew"},
		{"update", "auth/token/renew-self", "renew"},
		{"read", "auth/token/lookup-self", "lookup"},
		{"read", "sys/internal/ui/mounts/secret/data/a", "lookup"},
		{"update", "auth/token/revoke-self", "revoke"},
		{"update", "sys/leases/revoke", "revoke"},
		{"update", "secret/data/a", "other"},
	} {
		if got := kind(c.op, c.path); got != c.want {
			t.Errorf("%s %s: got %s, want %s", c.op, c.path, got, c.want)
		}
	}
}

const metricsText = `# HELP apiserver_admission_webhook_admission_duration_seconds [STABLE] Admission webhook latency
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="false",type="admit",le="0.005"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="false",type="admit",le="0.025"} 8
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="false",type="admit",le="0.1"} 10
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="false",type="admit",le="+Inf"} 10
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="true",type="admit",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="true",type="admit",le="0.025"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="true",type="admit",le="0.1"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="inject.ramvault.io",operation="CREATE",rejected="true",type="admit",le="+Inf"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vault.hashicorp.com",operation="CREATE",rejected="false",type="admit",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vault.hashicorp.com",operation="CREATE",rejected="false",type="admit",le="+Inf"} 5
apiserver_admission_webhook_admission_duration_seconds_sum{name="inject.ramvault.io",operation="CREATE",rejected="false",type="admit"} 0.2
`

func TestAdmissionHistogramOfOneWebhookAndItsQuantiles(t *testing.T) {
	h, err := admissionHistogram(strings.NewReader(metricsText), "inject.ramvault.io")
	if err != nil {
		t.Fatal(err)
	}
	if h.count() != 12 {
		t.Fatalf("count %v, want 12 (rejected or not, the other webhook left out)", h.count())
	}
	// p50: rank 6 of 12, in (5 ms, 25 ms] holding 6 of them from rank 2: 5 + 20·4/6 ms.
	if q := h.quantile(0.5); math.Abs(q-(0.005+0.020*4/6)) > 1e-9 {
		t.Errorf("p50 %v", q)
	}
	if q := h.quantile(0.99); q <= 0.025 || q > 0.1 {
		t.Errorf("p99 %v, want inside (25 ms, 100 ms]", q)
	}
	before, _ := admissionHistogram(strings.NewReader(strings.ReplaceAll(metricsText, "} 10\n", "} 9\n")), "inject.ramvault.io")
	if d := h.sub(before); d.count() != 1 {
		t.Errorf("difference of two snapshots: count %v, want 1", d.count())
	}
	if q := (histogram{}).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("no observations: %v, want NaN", q)
	}
}

func TestPercentileSlopeAndMemory(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if p := percentile(ds, 0.5); p != 5 {
		t.Errorf("p50 %v", p)
	}
	if p := percentile(ds, 0.95); p != 10 {
		t.Errorf("p95 %v", p)
	}
	if s := slope([]float64{10, 25, 50}, []float64{105, 255, 505}); math.Abs(s-10) > 1e-9 {
		t.Errorf("slope %v, want 10", s)
	}
	if s := slope([]float64{10}, []float64{1}); !math.IsNaN(s) {
		t.Errorf("slope of one point %v, want NaN", s)
	}
	used, err := memUsed(strings.NewReader("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n"))
	if err != nil || used != 600*1024 {
		t.Errorf("memUsed %v, %v", used, err)
	}
	if _, err := memUsed(strings.NewReader("MemTotal: 1 kB\n")); err == nil {
		t.Error("no MemAvailable: want an error")
	}
	rss, err := statField(strings.NewReader("cache 10\nrss 20\ntotal_cache 30\ntotal_rss 40\n"), "total_rss")
	if err != nil || rss != 40 {
		t.Errorf("total_rss %v, %v", rss, err)
	}
}

func TestPlotIsWellFormedSVGWithBothSides(t *testing.T) {
	var b bytes.Buffer
	p := panel{title: "memory", yLabel: "MiB", series: []series{
		{name: "ramvault", color: "#1f77b4", x: []float64{5, 10}, y: []float64{60, 120}},
		{name: "vault-k8s & co", color: "#d62728", x: []float64{5, 10}, y: []float64{700, 1400}},
	}}
	if err := writeSVG(&b, "caption <run>", []panel{p, p}); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 4 {
		t.Errorf("%d lines, want 2 per panel", polylines)
	}
	if !strings.Contains(b.String(), "vault-k8s &amp; co") || strings.Contains(b.String(), "<script") {
		t.Errorf("legend not escaped, or a script:\n%s", b.String())
	}
}

func TestOptionsNameEveryBadFlag(t *testing.T) {
	o := options{n: 0, secrets: 0, window: time.Second, dbTTL: time.Second, dbMaxTTL: time.Second}
	err := o.parse("10,x")
	for _, want := range []string{"-scale: \"x\"", "-n: 0", "-secrets: 0", "-window: 1s", "-db-ttl 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to name %s", err, want)
		}
	}
	o = options{n: 40, secrets: 3, window: time.Minute, dbTTL: time.Minute, dbMaxTTL: 3 * time.Minute}
	if err := o.parse("25,10,25"); err != nil {
		t.Fatal(err)
	}
	if got := joinInts(o.scale); got != "10, 25, 40" {
		t.Errorf("N list %s, want 10, 25, 40 (sorted, n added, no duplicates)", got)
	}
}

func mustRead(t *testing.T, f string) string {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
