package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ramvault/ramvault/pkg/version"
)

func TestCLI(t *testing.T) {
	pod, err := os.ReadFile(filepath.Join(goldenDir, "basic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	injected, err := os.ReadFile(filepath.Join(goldenDir, "basic.injected"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name           string
		args           []string
		stdin          string
		code           int
		stdout, stderr string // substrings; stdout "" means empty
	}{
		{name: "version prints the version", args: []string{"version"}, stdout: version.String("ramvault") + "\n"},
		{name: "no command prints the usage", code: exitUsage, stderr: "Usage:"},
		{name: "an unknown command is a usage error", args: []string{"injct"}, code: exitUsage, stderr: `unknown command "injct"`},
		{name: "inject needs a file", args: []string{"inject"}, code: exitUsage, stderr: "-f FILE is required"},
		{name: "inject -h shows the flags", args: []string{"inject", "-h"}, stderr: "-native-sidecars"},
		{name: "a bad flag value is a usage error", args: []string{"inject", "-f", "-", "--agent-limits=cpu"}, code: exitUsage, stderr: `"cpu": want name=quantity`},
		{name: "an invalid configuration is a usage error", args: []string{"lint", "-f", "-", "--token-expiration-seconds=60"}, code: exitUsage, stderr: "--token-expiration-seconds: 60 is too short"},
		{name: "- reads standard input", args: []string{"inject", "-f", "-", "--vault-addr=https://vault.vault.svc:8200"}, stdin: string(pod), stdout: string(injected)},
		{name: "lint of a valid manifest prints nothing", args: []string{"lint", "-f", "-", "--vault-addr=https://vault.vault.svc:8200"}, stdin: string(pod)},
		{name: "lint without the injector's configuration checks the manifest only", args: []string{"lint", "-f", "-"}, stdin: string(pod)},
		{name: "lint without the injector's configuration still finds bad annotations", args: []string{"lint", "-f", "-"},
			stdin: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {ramvault.io/inject: \"true\", ramvault.io/secrte-a: kv/a}\nspec:\n  containers: [{name: a, image: a}]\n",
			code:  exitInvalid, stderr: "did you mean ramvault.io/secret-a"},
		{name: "inject without a Vault address says so", args: []string{"inject", "-f", "-"}, stdin: string(pod), code: exitInvalid, stderr: "--vault-addr"},
		{name: "a missing file is reported", args: []string{"inject", "-f", "../testdata/nope.yaml"}, code: exitInvalid, stderr: "no such file"},
		{name: "a malformed document is reported", args: []string{"inject", "-f", "-"}, stdin: "kind: Pod\nmetadata: [\n", code: exitInvalid, stderr: "document 1"},
		{name: "a document that is no object is reported", args: []string{"inject", "-f", "-"}, stdin: "kind: Pod\n---\n- a\n", code: exitInvalid, stderr: "document 2: not a Kubernetes object"},
		{name: "an object without its template is reported", args: []string{"inject", "-f", "-"}, stdin: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", code: exitInvalid, stderr: "Deployment/d: no spec.template"},
		{name: "a Pod without namespace is injected (the webhook sets it)", args: []string{"inject", "-f", "-", "--vault-addr=https://v:8200"},
			stdin:  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {ramvault.io/inject: \"true\", ramvault.io/secret-a: kv/a, ramvault.io/run-as-user: \"7\"}\nspec:\n  containers: [{name: a, image: a}]\n",
			stdout: "ramvault.io/status: injected " + version.Version},
	}
	vk := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {vault.hashicorp.com/agent-inject: \"true\", vault.hashicorp.com/agent-inject-secret-a: kv/a}\nspec:\n  securityContext: {runAsUser: 7}\n  containers: [{name: a, image: a}]\n"
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("vault-addr: https://v:8200\nvault-k8s-annotations: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, []struct {
		name           string
		args           []string
		stdin          string
		code           int
		stdout, stderr string
	}{
		{name: "without --vault-k8s-annotations a vault-k8s Pod passes unchanged", args: []string{"inject", "-f", "-", "--vault-addr=https://v:8200"}, stdin: vk, stdout: "vault.hashicorp.com/agent-inject: \"true\""},
		{name: "--vault-k8s-annotations injects it", args: []string{"inject", "-f", "-", "--vault-addr=https://v:8200", "--vault-k8s-annotations"}, stdin: vk, stdout: "vault.hashicorp.com/agent-inject-status: injected"},
		{name: "so does vault-k8s-annotations in --config", args: []string{"inject", "-f", "-", "--config", cfgFile}, stdin: vk, stdout: "ramvault.io/template-a:"},
		{name: "and lint reads it too", args: []string{"lint", "-f", "-", "--config", cfgFile}, stdin: strings.Replace(vk, "kv/a}", "kv/a, vault.hashicorp.com/agent-configmap: c}", 1), code: exitInvalid, stderr: "vault.hashicorp.com/agent-configmap: ramvault reads no Vault Agent configuration"},
		{name: "migrate needs a file", args: []string{"migrate"}, code: exitUsage, stderr: "-f FILE is required"},
		{name: "migrate rewrites standard input", args: []string{"migrate", "-f", "-"}, stdin: vk, stdout: "ramvault.io/template-a: |-"},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := RunCLI(context.Background(), tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if tc.stdout == "" && stdout.Len() > 0 || !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			}
			if tc.stderr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
		})
	}
}
