package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ramvault/ramvault/injector/kube/kubetest"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	file := writeFile(t, "config.yaml", `
vault-addr: https://vault.example:8200
allowed-vault-addrs: [https://eu.example:8200, https://us.example:8200]
agent-limits: {cpu: 200m, memory: 64Mi}
token-expiration-seconds: 7200
native-sidecars: false
audience: from-file
`)
	o, err := parseWebhookFlags([]string{"--config=" + file, "--audience=from-flag", "--self-signed", "--namespace=ns"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := o.Inject
	if c.VaultAddr != "https://vault.example:8200" || !slices.Equal(c.AllowedVaultAddrs, []string{"https://eu.example:8200", "https://us.example:8200"}) ||
		c.TokenExpirationSeconds != 7200 || c.NativeSidecars || !c.Resources.Limits.Memory().Equal(resource.MustParse("64Mi")) {
		t.Errorf("config from the file: %+v", c)
	}
	if c.Audience != "from-flag" {
		t.Errorf("audience %q: the flag must win over the file", c.Audience)
	}
	if o.DiscoverNative {
		t.Error("native-sidecars given in the file, yet discovered")
	}
	// The CLI reads the same file.
	cfg, _, err := parseFlags("inject", []string{"-f", "-", "--config=" + file}, &bytes.Buffer{})
	if err != nil || cfg.VaultAddr != c.VaultAddr || cfg.Audience != "from-file" {
		t.Errorf("the CLI's config from the same file: %+v (%v)", cfg, err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	file := writeFile(t, "config.yaml", "vault-adr: https://v:8200\nagent-limits: {cpu: lots}\naddr: :1\n")
	_, err := parseWebhookFlags([]string{"--config=" + file, "--self-signed", "--namespace=ns"}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("no error")
	}
	errorMentions(t, err, `unknown key "vault-adr"`, `unknown key "addr"`, "the keys are agent-image, agent-limits,", `agent-limits: "cpu=lots"`)
}

func TestWebhookFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string // substrings of the one error; none: valid
	}{
		{name: "TLS files are enough", args: []string{"--tls-cert-file=c", "--tls-key-file=k"}},
		{name: "self-signed needs the namespace", args: []string{"--self-signed"}, want: []string{"--namespace: empty"}},
		{name: "no TLS is an error", want: []string{"--tls-cert-file and --tls-key-file: both are needed, or --self-signed"}},
		{name: "both TLS modes are an error", args: []string{"--self-signed", "--namespace=n", "--tls-cert-file=c"}, want: []string{"drop --tls-cert-file"}},
		{name: "every problem is reported, with the injection defaults'", args: []string{"--self-signed", "--cert-validity=1s", "--ca-validity=2s",
			"--token-expiration-seconds=60", "--max-request-bytes=0"},
			want: []string{"--namespace: empty", "--cert-validity: 1s is too short", "--ca-validity: 2s is too short", "--token-expiration-seconds: 60 is too short", "--max-request-bytes: 0"}},
		{name: "the CA must outlive the certificate", args: []string{"--self-signed", "--namespace=n", "--cert-validity=10h", "--ca-validity=5h"},
			want: []string{"--ca-validity: 5h0m0s is shorter than --cert-validity"}},
		{name: "an argument is an error", args: []string{"--self-signed", "--namespace=n", "extra"}, want: []string{`unexpected argument "extra"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseWebhookFlags(tc.args, &bytes.Buffer{})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !o.DiscoverNative {
					t.Error("native sidecars not discovered without the flag")
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			errorMentions(t, err, tc.want...)
		})
	}
}

func TestRunWebhookUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := RunCLI(context.Background(), []string{"webhook", "--self-signed"}, nil, &bytes.Buffer{}, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "ramvault webhook: --namespace: empty") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := RunCLI(context.Background(), []string{"webhook", "-h"}, nil, &bytes.Buffer{}, &stderr); code != exitOK ||
		!strings.Contains(stderr.String(), "-self-signed") || !strings.Contains(stderr.String(), "-vault-addr") {
		t.Errorf("exit %d, help %q", code, stderr.String())
	}
}

func TestNativeSidecarsFromTheServerVersion(t *testing.T) {
	for v, want := range map[string]bool{"v1.28.9": false, "v1.29.0": true, "v1.34.4": true, "v1.30.2-gke.1587003": true, "v2.0.0": true} {
		t.Run(v, func(t *testing.T) {
			api := kubetest.NewAPIServer(t)
			api.GitVersion = v
			client, _ := api.Client(t)
			got, gv, err := nativeSidecars(context.Background(), client.ServerVersion)
			if err != nil || got != want || gv != v {
				t.Errorf("native %v (%q, %v), want %v", got, gv, err, want)
			}
		})
	}
}

func TestServiceHosts(t *testing.T) {
	got := serviceHosts("ramvault-injector", "ramvault-system", "cluster.local.", []string{"10.88.77.1"})
	want := []string{"ramvault-injector.ramvault-system.svc", "ramvault-injector", "ramvault-injector.ramvault-system",
		"ramvault-injector.ramvault-system.svc.cluster.local", "10.88.77.1"}
	if !slices.Equal(got, want) {
		t.Errorf("hosts %v, want %v", got, want)
	}
}

func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if got := gcPercent("150"); got != "150" {
		t.Fatalf("GOGC=150 in the environment: reported %q", got)
	}
	if prev := debug.SetGCPercent(100); prev != 100 {
		t.Fatalf("GOGC=150 in the environment (applied by the runtime): the webhook changed it to %d", prev)
	}
	if got := gcPercent(""); got != strconv.Itoa(defaultGCPercent) {
		t.Fatalf("no GOGC: reported %q", got)
	}
	if prev := debug.SetGCPercent(100); prev != defaultGCPercent {
		t.Fatalf("no GOGC: GC percent %d, want %d", prev, defaultGCPercent)
	}
}

// errorMentions fails the test unless err's message holds every want.
func errorMentions(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestMemoryLimitFollowsTheCgroup(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.max")
	if err := os.WriteFile(file, []byte("134217728\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit("", file); got != 134217728/10*8 {
		t.Errorf("memoryLimit with a 128Mi cgroup = %d, want 80%%", got)
	}
	if err := os.WriteFile(file, []byte("max\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit("", file); got != -1 {
		t.Errorf("memoryLimit without a cgroup limit = %d, want -1", got)
	}
	// cgroup v1: no memory.max, the limit in memory/memory.limit_in_bytes,
	// and "no limit" written as a huge number.
	v1 := filepath.Join(dir, "memory.limit_in_bytes")
	if err := os.WriteFile(v1, []byte("134217728\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit("", filepath.Join(dir, "absent"), v1); got != 134217728/10*8 {
		t.Errorf("memoryLimit with a 128Mi cgroup v1 limit = %d, want 80%%", got)
	}
	if err := os.WriteFile(v1, []byte("9223372036854771712\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := memoryLimit("", filepath.Join(dir, "absent"), v1); got != -1 {
		t.Errorf("memoryLimit without a cgroup v1 limit = %d, want -1", got)
	}
}
