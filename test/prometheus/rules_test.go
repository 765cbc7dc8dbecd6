// Package prometheus tests what ramvault ships for Prometheus
// (manifests/prometheus): the rules under promtool, the PrometheusRule
// generated from them, the docs quoting the scrape configuration, and, on the
// stack, Prometheus scraping the webhook and the agents through that
// configuration, an alert firing and the dashboard's queries answering.
package prometheus

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ramvault/ramvault/test/stack"
)

var update = flag.Bool("update", false, "regenerate manifests/prometheus/prometheusrule.yaml from rules.yaml")

func repo(t *testing.T, elem ...string) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// promtool is the one `make tools` builds with Prometheus (the same module).
func promtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	bin := os.Getenv("RAMVAULT_BIN")
	if bin == "" {
		bin = repo(t, "bin")
	}
	tool := filepath.Join(bin, "promtool")
	if _, err := os.Stat(tool); err != nil {
		t.Fatalf("%s: run `make tools`", tool)
	}
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The shipped rules are valid, and each alert fires where rules_test.yaml
// says and stays quiet just below its threshold.
func TestShippedRulesPassPromtool(t *testing.T) {
	dir := repo(t, "manifests", "prometheus")
	promtool(t, dir, "check", "rules", "rules.yaml")
	out := promtool(t, dir, "test", "rules", "rules_test.yaml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
	// every alert of the file has a test case
	rules, err := os.ReadFile(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(dir, "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok {
			name, _, _ = strings.Cut(name, " ")
			if !strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("rules_test.yaml has no case for %s", name)
			}
		}
	}
}

// The scrape configuration parses as a Prometheus configuration (in-cluster
// discovery, as the docs give it).
func TestScrapeConfigurationPassesPromtool(t *testing.T) {
	promtool(t, repo(t, "manifests", "prometheus"), "check", "config", "--syntax-only", "scrape-configs.yaml")
}

// prometheusRule is the PrometheusRule object of the rules file: its groups
// under spec, its comments dropped.
func prometheusRule(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated from rules.yaml by go test ./test/prometheus -update; do not edit.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ramvault
  namespace: ramvault-system
  labels:
    app.kubernetes.io/name: ramvault
spec:
`)
	for _, line := range strings.Split(strings.TrimRight(string(rules), "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	return b.Bytes()
}

func TestPrometheusRuleIsTheRulesFile(t *testing.T) {
	dir := repo(t, "manifests", "prometheus")
	rules, err := os.ReadFile(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := prometheusRule(rules)
	path := filepath.Join(dir, "prometheusrule.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("prometheusrule.yaml is stale: go test ./test/prometheus -run TestPrometheusRuleIsTheRulesFile -update")
	}
}

// docs/operations.md quotes the shipped scrape configuration as it is, so
// the configuration the docs give is the one the stack runs.
func TestOperationsDocQuotesTheScrapeConfiguration(t *testing.T) {
	doc, err := os.ReadFile(repo(t, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(repo(t, stack.ScrapeConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(file)+"```\n") {
		t.Fatalf("docs/operations.md does not quote %s verbatim in a yaml block", stack.ScrapeConfigFile)
	}
}
