package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

const mib = 1 << 20

// row is one line of a side-by-side table: ramvault's and vault-k8s's
// figures, and the ratio of the two when it means something.
type row struct {
	what           string
	rv, vk         float64
	unit           string
	format         string // of each figure, e.g. "%.1f"
	noRatio        bool
	rvText, vkText string // when set, printed instead of the figures
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| | ramvault | vault-k8s + Vault Agent | ramvault / vault-k8s |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		rv, vk := r.rvText, r.vkText
		if rv == "" {
			rv = fmt.Sprintf(r.format, r.rv) + r.unit
		}
		if vk == "" {
			vk = fmt.Sprintf(r.format, r.vk) + r.unit
		}
		ratio := ""
		if !r.noRatio {
			ratio = fmtRatio(r.rv, r.vk)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.what, rv, vk, ratio)
	}
}

func fmtRatio(a, b float64) string {
	switch {
	case b == 0 && a == 0:
		return "—"
	case b == 0 || math.IsNaN(a) || math.IsNaN(b):
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// figures of one run the tables, the slope and the goals use.
type figures struct {
	p50, p95, maxReady          float64 // ms
	memTotal, memPerPod         float64 // MiB (usage_in_bytes)
	rssPerPod                   float64 // MiB
	cpu, cpuPerPod              float64 // CPU-seconds over the window
	reqPerPodHour               float64 // startup + steady, per Pod-hour
	reqPerHour                  float64 // the same, all Pods: requests Vault gets per hour of the run
	steadyPerPodHour            float64
	startupPerPod, shutdownPerP float64
	rolesPerPod, rolesPerPodH   float64
	admP50, admP99              float64 // ms
}

func figuresOf(r *result) figures {
	n := float64(r.n)
	t := r.vault
	f := figures{
		p50: ms(percentile(r.ready, 0.5)), p95: ms(percentile(r.ready, 0.95)), maxReady: ms(percentile(r.ready, 1)),
		memTotal: float64(r.memUsage) / mib, memPerPod: float64(r.memUsage) / mib / n, rssPerPod: float64(r.memRSS) / mib / n,
		cpu: r.cpu, cpuPerPod: r.cpu / n,
		startupPerPod: float64(t.total(startup)) / n, shutdownPerP: float64(t.total(shutdown)) / n,
		steadyPerPodHour: float64(t.total(steady)) / (n * r.windowEnd.Sub(r.windowStart).Hours()),
		rolesPerPod:      float64(t.dbRoles[startup]+t.dbRoles[steady]) / n,
		admP50:           r.admission.quantile(0.5) * 1000, admP99: r.admission.quantile(0.99) * 1000,
	}
	f.reqPerPodHour = float64(t.total(startup)+t.total(steady)) / r.podHours()
	f.reqPerHour = f.reqPerPodHour * n
	f.rolesPerPodH = float64(t.dbRoles[startup]+t.dbRoles[steady]) / r.podHours()
	return f
}

func report(w io.Writer, o options, results map[string][]*result, took time.Duration) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n# bench-scale: ramvault vs vault-k8s v1.6.2 + Vault Agent 1.21.0 on one kubelet\n\n")
	fmt.Fprintf(w, "%s, host %s, %d CPUs, cgroup v1; %s; took %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), commandLine(), took.Round(time.Second))
	fmt.Fprintf(w, "per Pod: %d KV v2 secret(s) and 1 PostgreSQL credential (TTL %s, max TTL %s); window %s per run; one side at a time\n",
		o.secrets-1, o.dbTTL, o.dbMaxTTL, o.window)
	fmt.Fprintf(w, "the stack's Prometheus is paused for the run: it scrapes ramvault's agents every 2 s (a test setting), vault-k8s's agents have no metrics\n")
	fmt.Fprintf(w, "vault-k8s runs with its shipped defaults except:\n")
	for _, c := range peerChanges {
		fmt.Fprintf(w, "  - %s\n", c)
	}
	fmt.Fprintf(w, "ramvault runs as `make dev-up` deploys it (its shipped webhook; native sidecar, the default on Kubernetes ≥ 1.29)\n")
	for i, n := range o.scale {
		rv, vk := results[ramvaultSide][i], results[vaultK8sSide][i]
		a, b := figuresOf(rv), figuresOf(vk)
		fmt.Fprintf(w, "\n## N = %d Pods per side\n\n", n)
		rows := []row{
			{what: "Pod create → Ready, p50", rv: a.p50, vk: b.p50, unit: " ms", format: "%.0f"},
			{what: "Pod create → Ready, p95", rv: a.p95, vk: b.p95, unit: " ms", format: "%.0f"},
			{what: "Pod create → Ready, max", rv: a.maxReady, vk: b.maxReady, unit: " ms", format: "%.0f"},
			{what: "agent memory, all Pods (cgroup memory.usage_in_bytes)", rv: a.memTotal, vk: b.memTotal, unit: " MiB", format: "%.1f"},
			{what: "agent memory per Pod", rv: a.memPerPod, vk: b.memPerPod, unit: " MiB", format: "%.2f"},
			{what: "agent RSS per Pod (memory.stat total_rss)", rv: a.rssPerPod, vk: b.rssPerPod, unit: " MiB", format: "%.2f"},
			{what: "agent CPU over the window, all Pods", rv: a.cpu, vk: b.cpu, unit: " s", format: "%.2f"},
			{what: "agent restarts", rv: float64(rv.restarts), vk: float64(vk.restarts), format: "%.0f", noRatio: true},
			{what: "Vault requests per Pod-hour (create → window end)", rv: a.reqPerPodHour, vk: b.reqPerPodHour, format: "%.1f"},
		}
		for _, k := range kinds {
			rows = append(rows, row{what: "  " + k + " per Pod-hour", rv: kindPerPodHour(rv, k), vk: kindPerPodHour(vk, k), format: "%.1f"})
		}
		rows = append(rows,
			row{what: "Vault requests per Pod at start-up (create → every Pod Ready)", rv: a.startupPerPod, vk: b.startupPerPod, format: "%.1f",
				rvText: kindBreakdown(rv, startup), vkText: kindBreakdown(vk, startup)},
			row{what: "Vault requests per Pod-hour in the window", rv: a.steadyPerPodHour, vk: b.steadyPerPodHour, format: "%.1f"},
			row{what: "Vault requests per Pod at shutdown", rv: a.shutdownPerP, vk: b.shutdownPerP, format: "%.1f",
				rvText: kindBreakdown(rv, shutdown), vkText: kindBreakdown(vk, shutdown)},
			row{what: "Vault requests answered with an error", rv: float64(errorsOf(rv)), vk: float64(errorsOf(vk)), format: "%.0f", noRatio: true},
			row{what: "PostgreSQL roles created per Pod (create → window end)", rv: a.rolesPerPod, vk: b.rolesPerPod, format: "%.2f"},
			row{what: "PostgreSQL roles created per Pod-hour", rv: a.rolesPerPodH, vk: b.rolesPerPodH, format: "%.1f"},
			row{what: fmt.Sprintf("admission p50 (apiserver histogram, %d/%d reviews)", int(rv.admission.count()), int(vk.admission.count())), rv: a.admP50, vk: b.admP50, unit: " ms", format: "%.1f"},
			row{what: "admission p99", rv: a.admP99, vk: b.admP99, unit: " ms", format: "%.1f"},
			row{what: "node memory used with the Pods running", rv: float64(rv.nodeUsed) / mib, vk: float64(vk.nodeUsed) / mib, unit: " MiB", format: "%.0f"},
			row{what: "  over the node before the run", rv: float64(rv.nodeUsed-rv.nodeBase) / mib, vk: float64(vk.nodeUsed-vk.nodeBase) / mib, unit: " MiB", format: "%.0f"},
		)
		printTable(w, rows)
		for _, r := range []*result{rv, vk} {
			keys := make([]string, 0, len(r.vault.failures))
			for k := range r.vault.failures {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "- %s, errors: %d × %s\n", r.side, r.vault.failures[k], k)
			}
		}
	}
	fmt.Fprintf(w, "\nadmission latency is interpolated inside the apiserver's buckets (5, 25, 100, 500 ms, …): coarse below 25 ms\n")

	if len(o.scale) > 1 {
		fmt.Fprintf(w, "\n## Per-Pod slope over N = %s (least squares)\n\n", joinInts(o.scale))
		slopeOf := func(s string, y func(figures) float64) float64 {
			var xs, ys []float64
			for _, r := range results[s] {
				xs, ys = append(xs, float64(r.n)), append(ys, y(figuresOf(r)))
			}
			return slope(xs, ys)
		}
		printTable(w, []row{
			{what: "agent memory per added Pod", rv: slopeOf(ramvaultSide, func(f figures) float64 { return f.memTotal }),
				vk: slopeOf(vaultK8sSide, func(f figures) float64 { return f.memTotal }), unit: " MiB", format: "%.2f"},
			{what: "Vault requests per hour per added Pod", rv: slopeOf(ramvaultSide, func(f figures) float64 { return f.reqPerHour }),
				vk: slopeOf(vaultK8sSide, func(f figures) float64 { return f.reqPerHour }), format: "%.1f"},
		})
	}

	last := len(o.scale) - 1
	for i, n := range o.scale {
		if n == o.n {
			last = i
		}
	}
	rv, vk := results[ramvaultSide][last], results[vaultK8sSide][last]
	a, b := figuresOf(rv), figuresOf(vk)
	lifetimes := math.Ceil(rv.windowEnd.Sub(rv.created).Seconds() / o.dbMaxTTL.Seconds())
	fmt.Fprintf(w, "\n## Goals of issue 13, at N = %d\n\n", o.n)
	goal := func(name string, met bool, detail string) {
		v := "not met"
		if met {
			v = "met"
		}
		fmt.Fprintf(w, "- %s: **%s** (%s)\n", name, v, detail)
	}
	goal("agent memory per Pod ≤ 1/10 of vault-k8s's", a.memPerPod <= b.memPerPod/10, fmt.Sprintf("%.2f vs %.2f MiB: %s", a.memPerPod, b.memPerPod, fmtRatio(a.memPerPod, b.memPerPod)))
	goal("Vault requests per Pod-hour ≤ 1/2", a.reqPerPodHour <= b.reqPerPodHour/2, fmt.Sprintf("%.1f vs %.1f: %s", a.reqPerPodHour, b.reqPerPodHour, fmtRatio(a.reqPerPodHour, b.reqPerPodHour)))
	goal("agent CPU ≤ 1/4", a.cpu <= b.cpu/4, fmt.Sprintf("%.2f vs %.2f CPU-s over the window: %s", a.cpu, b.cpu, fmtRatio(a.cpu, b.cpu)))
	goal("Ready p95 no worse than vault-k8s's", a.p95 <= b.p95, fmt.Sprintf("%.0f vs %.0f ms", a.p95, b.p95))
	goal("PostgreSQL roles no more than one per lease lifetime", a.rolesPerPod <= lifetimes,
		fmt.Sprintf("%.2f per Pod against %.0f lease lifetime(s) of %s started in the run; vault-k8s %.2f", a.rolesPerPod, lifetimes, o.dbMaxTTL, b.rolesPerPod))
	fmt.Fprintf(w, "- ramvault's share over an empty container ≤ 50 ms, and the webhook's throughput: `make bench-pods`, `make bench-webhook`\n")
}

func kindPerPodHour(r *result, k string) float64 {
	return float64(r.vault.requests[startup][k]+r.vault.requests[steady][k]) / r.podHours()
}

// kindBreakdown is "4.0 (login 2.0, read 2.0)": per Pod, the kinds seen.
func kindBreakdown(r *result, p phase) string {
	var parts []string
	for _, k := range kinds {
		if c := r.vault.requests[p][k]; c > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(c)/float64(r.n)))
		}
	}
	s := fmt.Sprintf("%.1f", float64(r.vault.total(p))/float64(r.n))
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func errorsOf(r *result) int {
	n := 0
	for _, e := range r.vault.errors {
		n += e
	}
	return n
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func commandLine() string {
	args := append([]string{"go run ./test/cmd/bench-scale"}, os.Args[1:]...)
	return "`" + strings.Join(args, " ") + "`"
}

// plot writes the SVG of agent memory and Vault requests per hour against N.
func plot(o options, results map[string][]*result) error {
	colors := map[string]string{ramvaultSide: "#1f77b4", vaultK8sSide: "#d62728"}
	mem := panel{title: "Agent memory, all Pods", yLabel: "MiB (cgroup memory usage)"}
	req := panel{title: "Vault requests per hour, all Pods", yLabel: "requests per hour"}
	for _, s := range []string{ramvaultSide, vaultK8sSide} {
		ms, rs := series{name: s, color: colors[s]}, series{name: s, color: colors[s]}
		for _, r := range results[s] {
			f := figuresOf(r)
			ms.x, ms.y = append(ms.x, float64(r.n)), append(ms.y, f.memTotal)
			rs.x, rs.y = append(rs.x, float64(r.n)), append(rs.y, f.reqPerHour)
		}
		mem.series, req.series = append(mem.series, ms), append(req.series, rs)
	}
	if err := os.MkdirAll(filepath.Dir(o.svg), 0o755); err != nil {
		return err
	}
	f, err := os.Create(o.svg)
	if err != nil {
		return err
	}
	caption := fmt.Sprintf("make bench-scale, %s, window %s, %d secrets per Pod", time.Now().UTC().Format("2006-01-02"), o.window, o.secrets)
	if err := writeSVG(f, caption, []panel{mem, req}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
