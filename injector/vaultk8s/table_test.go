package vaultk8s

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/vault-k8s-annotations.md")

// v176 is every annotation key vault-k8s v1.7.6 defines
// (agent-inject/agent/annotations.go, the constants' values), families
// written with their trailing dash.
var v176 = strings.Fields(`agent-inject-status agent-inject agent-inject-secret- agent-inject-file- agent-inject-perms-
agent-inject-template- agent-inject-containers agent-inject-default-template agent-inject-template-file-
agent-template-left-delim- agent-template-right-delim- agent-inject-token agent-inject-command- agent-image
agent-request-namespace agent-init-first agent-pre-populate agent-pre-populate-only agent-configmap
agent-extra-secret agent-limits-cpu agent-limits-mem agent-limits-ephemeral agent-requests-cpu agent-requests-mem
agent-requests-ephemeral agent-revoke-on-shutdown agent-revoke-grace namespace agent-run-as-user agent-run-as-group
agent-run-as-same-user agent-share-process-namespace agent-set-security-context agent-service-account-token-volume-name
service proxy-address tls-skip-verify tls-secret tls-server-name ca-cert ca-key client-cert client-key
client-max-retries client-timeout go-max-procs log-level log-format role auth-type auth-path auth-config-
secret-volume-path secret-volume-path- preserve-secret-case preserve-secret-case- agent-cache-enable
agent-cache-use-auto-auth-token agent-cache-listener-port agent-cache-exit-on-err agent-copy-volume-mounts
template-config-exit-on-retry-failure template-static-secret-render-interval template-max-connections-per-host
template-lease-renewal-threshold agent-enable-quit auth-min-backoff auth-max-backoff agent-disable-idle-connections
agent-disable-keep-alives agent-json-patch agent-init-json-patch agent-auto-auth-exit-on-err agent-telemetry-
error-on-missing-key-`)

func TestTableHasEveryVaultK8sAnnotation(t *testing.T) {
	rows := map[string]Row{}
	for _, r := range Table() {
		k := r.Name
		if r.Family != "" {
			k += "-"
		}
		if _, dup := rows[k]; dup {
			t.Errorf("two rows for %s", k)
		}
		rows[k] = r
		if r.Doc == "" || r.Outcome == "" {
			t.Errorf("row %s has no doc or outcome", k)
		}
		if r.Outcome == Denied && r.Ramvault == "" {
			t.Errorf("denied row %s names no ramvault way", k)
		}
	}
	for _, k := range v176 {
		if _, ok := rows[k]; !ok {
			t.Errorf("vault-k8s's %s%s has no row", Prefix, k)
		}
	}
	if len(rows) != len(v176) {
		t.Errorf("%d rows for %d vault-k8s annotations", len(rows), len(v176))
	}
}

func TestReferenceIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "vault-k8s-annotations.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./injector/vaultk8s -update)", err)
	}
	if string(got) != want {
		t.Fatal("docs/vault-k8s-annotations.md is stale: run go test ./injector/vaultk8s -update")
	}
}
