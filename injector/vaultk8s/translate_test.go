package vaultk8s

import (
	"errors"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestTranslate(t *testing.T) {
	cases := []struct {
		name   string
		in     map[string]string
		want   map[string]string // ramvault.io/ keys without the prefix
		errors []string          // substrings, one per error, in order
	}{
		{name: "a secret without a template gets vault-k8s's default template, at /vault/secrets",
			in:   map[string]string{"agent-inject": "true", "role": "web", "agent-inject-secret-db": "database/creds/web"},
			want: map[string]string{"inject": "true", "role": "web", "mount-path": "/vault/secrets", "template-db": "{{ with secret \"database/creds/web\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}"}},
		{name: "json is the other default template",
			in:   map[string]string{"agent-inject": "1", "agent-inject-default-template": "JSON", "agent-inject-secret-cfg": "secret/data/cfg"},
			want: map[string]string{"inject": "true", "mount-path": "/vault/secrets", "template-cfg": "{{ with secret \"secret/data/cfg\" }}{{ .Data | toJSON }}\n{{ end }}"}},
		{name: "a template is taken as it is, and an empty or stale secret path is tolerated",
			in: map[string]string{"agent-inject": "true", "agent-inject-secret-a": "", "agent-inject-template-a": "{{ with secret \"kv/a\" }}{{ .Data.x }}{{ end }}",
				"agent-inject-secret-b": "stale/path", "agent-inject-template-b": "b"},
			want: map[string]string{"inject": "true", "mount-path": "/vault/secrets", "template-a": "{{ with secret \"kv/a\" }}{{ .Data.x }}{{ end }}", "template-b": "b"}},
		{name: "mixed-case names are lower-cased, or keep their case as the file name",
			in: map[string]string{"agent-inject": "True", "agent-inject-secret-DB_Creds": "kv/db", "agent-inject-secret-TLS.pem": "pki/issue/x",
				"preserve-secret-case-TLS.pem": "true"},
			want: map[string]string{"inject": "true", "mount-path": "/vault/secrets",
				"template-db_creds": "{{ with secret \"kv/db\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}",
				"template-tls.pem":  "{{ with secret \"pki/issue/x\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}",
				"file-name-tls.pem": "TLS.pem"}},
		{name: "file, perms, volume paths, resources and the Pod-wide settings",
			in: map[string]string{"agent-inject": "true", "agent-inject-template-cert": "c", "agent-inject-file-cert": "/tls/tls.crt", "agent-inject-perms-cert": "0644",
				"secret-volume-path": "/etc/secrets", "secret-volume-path-cert": "/etc/tls", "agent-limits-mem": "128Mi", "agent-requests-cpu": "50m",
				"agent-pre-populate-only": "true", "auth-path": "auth/k8s-prod", "auth-type": "jwt", "namespace": "team-a", "agent-inject-token": "true",
				"template-static-secret-render-interval": "30s", "agent-run-as-user": "1000", "agent-inject-containers": "app",
				"ca-cert": "/vault/tls/ca.crt", "tls-secret": "vault-tls", "tls-server-name": "vault.example.com", "agent-revoke-on-shutdown": "true"},
			want: map[string]string{"inject": "true", "mount-path": "/etc/secrets", "template-cert": "c", "file-name-cert": "tls/tls.crt", "file-mode-cert": "0600",
				"mount-path-cert": "/etc/tls", "agent-limits-memory": "128Mi", "agent-requests-cpu": "50m", "mode": "init-only", "auth-path": "auth/k8s-prod",
				"auth-type": "jwt", "vault-namespace": "team-a", "inject-token": "true", "refresh": "30s", "run-as-user": "1000", "containers": "app",
				"vault-ca-secret": "vault-tls", "vault-ca-key": "ca.crt", "vault-tls-server-name": "vault.example.com"}},
		{name: "the service account's CA is the namespace's kube-root-ca.crt, and auth-config-role is the role",
			in:   map[string]string{"agent-inject": "true", "agent-inject-template-x": "x", "ca-cert": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "auth-config-role": "r"},
			want: map[string]string{"inject": "true", "mount-path": "/vault/secrets", "template-x": "x", "vault-ca-configmap": "kube-root-ca.crt", "role": "r"}},
		{name: "every problem at once, each naming its annotation",
			in: map[string]string{"agent-inject": "true", "agent-inject-secret-a": "kv/a", "agent-inject-command-a": "kill -HUP 1", "agent-configmap": "cfg",
				"auth-type": "aws", "tls-skip-verify": "true", "agent-pre-populate": "yes", "agent-inject-file-b": "x", "agent-injetc-secret-c": "kv/c",
				"agent-inject-file-a": "../../etc/passwd", "agent-template-left-delim-a": "[["},
			errors: []string{`vault.hashicorp.com/agent-configmap: ramvault reads no Vault Agent configuration`,
				`vault.hashicorp.com/agent-inject-command-a: ramvault's agent runs no commands`,
				`vault.hashicorp.com/agent-inject-file-b: there is no secret "b"`,
				`vault.hashicorp.com/agent-injetc-secret-c: unknown vault-k8s annotation (did you mean vault.hashicorp.com/agent-inject-secret-c?)`,
				`vault.hashicorp.com/agent-pre-populate: "yes" is not a boolean`,
				`vault.hashicorp.com/auth-type: auth method "aws" cannot be used`,
				`vault.hashicorp.com/tls-skip-verify: TLS verification cannot be turned off`,
				`vault.hashicorp.com/agent-inject-file-a: "../../etc/passwd" leaves the secrets volume`}},
		{name: "false values of denied features, and empty denied values, need nothing",
			in: map[string]string{"agent-inject": "true", "agent-inject-template-x": "x", "tls-skip-verify": "false", "agent-cache-enable": "false",
				"agent-set-security-context": "true", "agent-json-patch": "", "proxy-address": ""},
			want: map[string]string{"inject": "true", "mount-path": "/vault/secrets", "template-x": "x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]string{"example.com/other": "x"}
			for k, v := range tc.in {
				in[Prefix+k] = v
			}
			res, err := Translate(in)
			if len(tc.errors) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{}
				for k, v := range tc.want {
					want[spec.Prefix+k] = v
				}
				// Every translated file renders a missing key as
				// consul-template does ("<no value>") unless the case says
				// otherwise: ramvault's own default is an error.
				for k := range tc.want {
					if name, ok := strings.CutPrefix(k, "template-"); ok {
						if _, set := want[spec.Prefix+"error-on-missing-key-"+name]; !set {
							want[spec.Prefix+"error-on-missing-key-"+name] = "false"
						}
					}
				}
				if !maps.Equal(res.Annotations, want) {
					t.Fatalf("got  %q\nwant %q", res.Annotations, want)
				}
				for k := range res.Annotations {
					if !strings.HasPrefix(res.From[k], Prefix) {
						t.Errorf("%s comes from %q", k, res.From[k])
					}
				}
				return
			}
			var list spec.ErrorList
			if !errors.As(err, &list) || len(list) != len(tc.errors) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tc.errors), err)
			}
			for i, w := range tc.errors {
				if !strings.Contains(list[i].Error(), w) {
					t.Errorf("error %d = %q\nwant it to contain %q", i, list[i].Error(), w)
				}
			}
		})
	}
}

// TestEveryDeniedAnnotationSaysTheRamvaultWay: each denied annotation,
// alone on a Pod, is denied with one message that names it and the ramvault
// way to the same result.
func TestEveryDeniedAnnotationSaysTheRamvaultWay(t *testing.T) {
	for _, r := range Table() {
		if r.Outcome != Denied {
			continue
		}
		v := "x"
		if r.Bool {
			v = r.DeniedWhen
		}
		in := map[string]string{InjectAnnotation: "true", Prefix + "agent-inject-secret-s": "kv/s", r.Key("s"): v}
		t.Run(r.Key("s"), func(t *testing.T) {
			_, err := Translate(in)
			var list spec.ErrorList
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			if list[0].Field != r.Key("s") || !strings.Contains(list[0].Message, "use ") && !strings.Contains(list[0].Message, "ramvault") {
				t.Errorf("message %q: want it on %s, naming the ramvault way", list[0], r.Key("s"))
			}
			t.Log(list[0])
		})
	}
}

func TestOptedInReadsBooleansAsVaultK8sDoes(t *testing.T) {
	for _, v := range []string{"true", "True", "TRUE", "1", "t", "T"} {
		if ok, err := OptedIn(map[string]string{InjectAnnotation: v}); !ok || err != nil {
			t.Errorf("%q: %v %v", v, ok, err)
		}
	}
	for _, v := range []string{"false", "0", "F", ""} {
		if ok, err := OptedIn(map[string]string{InjectAnnotation: v}); ok || err != nil {
			t.Errorf("%q: %v %v", v, ok, err)
		}
	}
	for _, v := range []string{"yes", "'true'", " true", "enabled"} {
		if _, err := OptedIn(map[string]string{InjectAnnotation: v}); err == nil {
			t.Errorf("%q accepted: vault-k8s refuses it", v)
		}
	}
	if ok, _ := OptedIn(map[string]string{}); ok {
		t.Error("no annotation opted in")
	}
	_ = slices.Contains[[]string]
}

// A key whose name is over Kubernetes's 63 characters (a review crafted for
// the webhook's port; the apiserver validates only after the mutating
// webhooks) is denied on its first 63 characters, never echoed whole nor
// compared for a did-you-mean: before, a 1 MB key cost a second of CPU and
// hundreds of MiB of allocations (a rune slice of it per table row).
func TestAnOverLongKeyIsDeniedWithoutEchoOrSuggestion(t *testing.T) {
	for _, name := range []string{"agent-inject-secret-" + strings.Repeat("x", 1<<20), strings.Repeat("agent-inject", 1<<17)} {
		in := map[string]string{InjectAnnotation: "true", Prefix + name: "kv/x", Prefix + "agent-inject-secret-ok": "kv/ok"}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Translate(in)
		runtime.ReadMemStats(&after)
		var list spec.ErrorList
		if !errors.As(err, &list) || len(list) != 1 {
			t.Fatalf("want one error, got %.300v", err)
		}
		if want := Prefix + name[:spec.MaxNameLen] + "…"; list[0].Field != want || len(list[0].Error()) > 300 {
			t.Errorf("error %.300q: want it on %q, short", list[0].Error(), want)
		}
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("a %d-byte key: %d bytes allocated", len(name), allocated)
		if allocated > uint64(len(name)) {
			t.Errorf("translating a %d-byte key allocated %d bytes: it must not copy the key", len(name), allocated)
		}
	}
}
