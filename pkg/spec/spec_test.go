package spec

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/annotations.md")

func TestParse(t *testing.T) {
	cases := []struct {
		name   string
		in     map[string]string
		check  func(t *testing.T, c *Annotations)
		errors []string // substrings, one per expected error, in order
	}{
		{name: "a minimal opt-in gets every default",
			in: map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-db": "secret/data/db"},
			check: func(t *testing.T, c *Annotations) {
				want := &Annotations{Inject: true, AuthPath: "kubernetes", AuthType: "kubernetes", Audience: "vault", VaultCAKey: "ca.crt", Reload: Reload{Kind: ReloadNone},
					Placement: "first", MountPath: "/var/run/secrets/ramvault", VolumeSize: "4Mi", Refresh: 5 * time.Minute,
					Secrets: []Secret{{Name: "db", Path: "secret/data/db", Method: "read", Format: FormatJSON, Refresh: 5 * time.Minute, FileMode: 0o400,
						File: "db", MountPath: "/var/run/secrets/ramvault"}}}
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("got  %+v\nwant %+v", c, want)
				}
			}},
		{name: "other prefixes are ignored", in: map[string]string{"example.com/x": "1", "ramvault.io/inject": "false"},
			check: func(t *testing.T, c *Annotations) {
				if c.Inject {
					t.Fatal("inject")
				}
			}},
		{name: "per-secret settings apply to their secret only",
			in: map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-a": "kv/a", "ramvault.io/secret-b": "pki/issue/web",
				"ramvault.io/key-a": "password", "ramvault.io/refresh-a": "30s", "ramvault.io/method-b": "write",
				"ramvault.io/params-b": "common_name=web.example.com, ttl=1h", "ramvault.io/reload-b": "signal:hup", "ramvault.io/file-mode-b": "0600"},
			check: func(t *testing.T, c *Annotations) {
				a, b := c.Secrets[0], c.Secrets[1]
				if a.Format != FormatRaw || a.Key != "password" || a.Refresh != 30*time.Second || a.Reload != nil {
					t.Errorf("a = %+v", a)
				}
				if b.Method != "write" || b.Params["common_name"] != "web.example.com" || b.Params["ttl"] != "1h" ||
					b.Reload == nil || b.Reload.Signal != syscall.SIGHUP || b.FileMode != 0o600 || b.Refresh != 5*time.Minute {
					t.Errorf("b = %+v", b)
				}
			}},
		{name: "a template implies format template",
			in: map[string]string{"ramvault.io/secret-db": "database/creds/app", "ramvault.io/template-db": "{{ .Data.username }}"},
			check: func(t *testing.T, c *Annotations) {
				if c.Secrets[0].Format != FormatTemplate {
					t.Fatal(c.Secrets[0].Format)
				}
			}},
		{name: "http reload on localhost is accepted",
			in: map[string]string{"ramvault.io/reload": "http:http://127.0.0.1:8080/-/reload"},
			check: func(t *testing.T, c *Annotations) {
				if c.Reload.Kind != ReloadHTTP || c.Reload.URL != "http://127.0.0.1:8080/-/reload" {
					t.Fatal(c.Reload)
				}
			}},
		{name: "every problem is reported at once, each naming its annotation",
			in: map[string]string{"ramvault.io/inject": "yes", "ramvault.io/reload": "signal:FOO", "ramvault.io/refresh": "5 minutes",
				"ramvault.io/secret-db": "secret/data/db", "ramvault.io/template-db": "{{ .Data.x ", "ramvault.io/mode": "sidecar"},
			errors: []string{
				`ramvault.io/inject: "yes" is not a boolean`,
				`ramvault.io/mode: "sidecar" is not one of native, classic, init-only`,
				`ramvault.io/refresh: "5 minutes" is not a duration`,
				`ramvault.io/reload: "signal:FOO": unknown signal`,
				`ramvault.io/template-db: line 1: syntax: unclosed action`}},
		{name: "a template alone is a file with no secret of its own, its dependencies in the template",
			in: map[string]string{"ramvault.io/template-tls.crt": `{{ with pkiCert "pki/issue/web" "common_name=web" }}{{ .Cert }}{{ end }}`,
				"ramvault.io/file-mode-tls.crt": "0600", "ramvault.io/reload-tls.crt": "signal:HUP"},
			check: func(t *testing.T, c *Annotations) {
				s := c.Secrets[0]
				if s.Name != "tls.crt" || s.Path != "" || s.Format != FormatTemplate || s.FileMode != 0o600 || s.Reload == nil {
					t.Errorf("%+v", s)
				}
			}},
		{name: "a template may use another secret of the Pod by name",
			in: map[string]string{"ramvault.io/secret-db": "database/creds/app", "ramvault.io/template-dsn": `{{ with ref "db" }}{{ .Data.username }}{{ end }}@{{ with secret "secret/app" }}{{ .Data.data.host }}{{ end }}`},
			check: func(t *testing.T, c *Annotations) {
				if len(c.Secrets) != 2 || c.Secrets[1].Name != "dsn" || c.Secrets[1].Path != "" {
					t.Errorf("%+v", c.Secrets)
				}
			}},
		{name: "template errors name the annotation: unknown function, bad path, ref to an undefined secret, dot in a template-only file",
			in: map[string]string{"ramvault.io/template-a": `{{ secrte "kv/a" }}`, "ramvault.io/template-b": `{{ secret "kv//b" }}`,
				"ramvault.io/template-c": `{{ with ref "nope" }}{{ .Data.x }}{{ end }}`, "ramvault.io/template-d": `{{ .Data.x }}`,
				"ramvault.io/template-e": `{{ .Data.x }}`, "ramvault.io/format-e": "yaml"},
			errors: []string{
				`ramvault.io/format-e: "e" is a template-only file (no ramvault.io/secret-e): format describes a file's own secret`,
				`ramvault.io/template-a: line 1, column 4: at <secrte>`,
				`ramvault.io/template-b: line 1, column 4: at <secret "kv//b">`,
				`ramvault.io/template-c: ref "nope": the Pod defines no ramvault.io/secret-nope`,
				`ramvault.io/template-d: the template reads ` + "`.`" + `, which is empty in a template-only file`}},
		{name: "a typo gets a did-you-mean",
			in:     map[string]string{"ramvault.io/secrte-db": "secret/data/db", "ramvault.io/vault-adress": "https://v:8200"},
			errors: []string{`ramvault.io/secrte-db: unknown annotation; did you mean ramvault.io/secret-db?`, `ramvault.io/vault-adress: unknown annotation; did you mean ramvault.io/vault-addr?`}},
		{name: "settings for an undefined secret are errors",
			in:     map[string]string{"ramvault.io/refresh-db": "1m"},
			errors: []string{`ramvault.io/refresh-db: no secret "db": add ramvault.io/secret-db`}},
		{name: "an opt-in without secrets is an error",
			in:     map[string]string{"ramvault.io/inject": "true"},
			errors: []string{`ramvault.io/inject: no secrets`}},
		{name: "a reload URL off localhost is refused",
			in:     map[string]string{"ramvault.io/reload": "http:http://example.com/reload"},
			errors: []string{`must be on localhost`}},
		{name: "file names must be safe",
			in:     map[string]string{"ramvault.io/secret-DB": "kv/x", "ramvault.io/secret-a..b/c": "kv/x"},
			errors: []string{`"DB" is not a valid secret name`, `"a..b/c" is not a valid secret name`}},
		{name: "raw without a key, params without write, format with template",
			in: map[string]string{"ramvault.io/secret-a": "kv/a", "ramvault.io/format-a": "raw", "ramvault.io/secret-b": "kv/b", "ramvault.io/params-b": "x=1",
				"ramvault.io/secret-c": "kv/c", "ramvault.io/format-c": "yaml", "ramvault.io/template-c": "x"},
			errors: []string{`ramvault.io/format-a: format raw needs ramvault.io/key-a`, `ramvault.io/params-b: parameters are sent only with`, `ramvault.io/format-c: set either format or template`}},
		{name: "restart reload needs a running agent",
			in:     map[string]string{"ramvault.io/reload": "restart", "ramvault.io/mode": "init-only"},
			errors: []string{`ramvault.io/reload: restart needs the agent running`}},
		{name: "a template without a secret is a file that reads its own secrets",
			in: map[string]string{"ramvault.io/inject": "true",
				"ramvault.io/template-dsn":  `{{ with secret "kv/app" }}{{ .Data.data.host }}{{ end }}:{{ with secret "database/creds/app" }}{{ .Data.username }}{{ end }}`,
				"ramvault.io/file-name-dsn": "config/dsn.txt", "ramvault.io/mount-path-dsn": "/etc/app/"},
			check: func(t *testing.T, c *Annotations) {
				s := c.Secrets[0]
				if !s.TemplateOnly() || s.Format != FormatTemplate || s.File != "config/dsn.txt" || s.MountPath != "/etc/app" {
					t.Fatalf("%+v", s)
				}
				if got := c.VolumePath(s); got != ".ramvault-mounts/0/config/dsn.txt" {
					t.Errorf("VolumePath = %q", got)
				}
				if m := c.Mounts(); len(m) != 2 || m[1] != (Mount{Path: "/etc/app", SubPath: ".ramvault-mounts/0"}) {
					t.Errorf("Mounts = %+v", m)
				}
			}},
		{name: "a template-only file is checked as consul-template, and takes no secret settings",
			in: map[string]string{"ramvault.io/template-a": `{{ with secret "kv/a" }}{{ env "HOME" }}{{ end }}`,
				"ramvault.io/template-b": `{{ with secret "kv/a b" }}{{ end }}`,
				"ramvault.io/template-e": `{{ with secret "kv/e" }}{{ end }}`, "ramvault.io/method-e": "write",
				"ramvault.io/template-c": `{{ range $k, $v := (secret "kv/c").Data }}{{ $k }}={{ $v | toJSON }}{{ end }}`},
			errors: []string{`ramvault.io/method-e: "e" is a template-only file`, `ramvault.io/template-a: line 1, column 28: at <env>: function "env" is not available`,
				`ramvault.io/template-b: line 1, column 9: at <secret "kv/a b">: path "kv/a b"`}},
		{name: "files may not overlap, nor escape their mount",
			in: map[string]string{"ramvault.io/secret-a": "kv/a", "ramvault.io/file-name-a": "x", "ramvault.io/secret-x": "kv/x",
				"ramvault.io/secret-b": "kv/b", "ramvault.io/file-name-b": "../etc/passwd", "ramvault.io/inject-token": "true", "ramvault.io/secret-token": "kv/t"},
			errors: []string{`ramvault.io/file-name-b: "../etc/passwd" is not a file name`, `ramvault.io/secret-token: the file`, `ramvault.io/secret-x: the file`}},
		{name: "agent resources and auth settings",
			in: map[string]string{"ramvault.io/agent-limits-memory": "64Mi", "ramvault.io/agent-requests-cpu": "0.05", "ramvault.io/agent-limits-cpu": "lots",
				"ramvault.io/auth-type": "aws", "ramvault.io/vault-ca-secret": "tls", "ramvault.io/vault-ca-configmap": "ca"},
			errors: []string{`ramvault.io/agent-limits-cpu: "lots" is not a Kubernetes quantity`, `ramvault.io/auth-type: "aws" is not one of kubernetes, jwt`,
				`ramvault.io/vault-ca-secret: set either`}},
		{name: "file modes never let other users read",
			in:     map[string]string{"ramvault.io/secret-a": "kv/a", "ramvault.io/file-mode-a": "0644", "ramvault.io/run-as-user": "0", "ramvault.io/volume-size": "1Gi"},
			errors: []string{`ramvault.io/run-as-user: "0" is not a non-root UID`, `ramvault.io/volume-size: "1Gi" is out of range`, `ramvault.io/file-mode-a: "0644": use 0400 or 0600`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.in)
			if len(tc.errors) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tc.check(t, c)
				return
			}
			list, ok := err.(ErrorList)
			if !ok {
				t.Fatalf("error %v (%T), want an ErrorList", err, err)
			}
			if len(list) != len(tc.errors) {
				t.Fatalf("%d errors, want %d:\n%v", len(list), len(tc.errors), err)
			}
			for i, want := range tc.errors {
				if !strings.Contains(list[i].Error(), want) {
					t.Errorf("error %d = %q, want it to contain %q", i, list[i].Error(), want)
				}
			}
		})
	}
}

func TestTableRowsAreDocumentedAndTyped(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Table() {
		k := r.Key("x")
		if seen[k] {
			t.Errorf("duplicate row %s", k)
		}
		seen[k] = true
		if r.Doc == "" || r.Type == "" || r.set == nil {
			t.Errorf("row %s lacks doc, type or setter", k)
		}
		if r.Default != "" {
			if err := r.set(&Annotations{}, &Secret{}, r.Default); err != nil {
				t.Errorf("row %s: its default %q does not validate: %v", k, r.Default, err)
			}
		}
	}
}

func TestAnnotationReferenceIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "annotations.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/spec -update)", err)
	}
	if string(got) != want {
		t.Fatal("docs/annotations.md is stale: run go test ./pkg/spec -update")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("ramvault.io/secret-db", "secret/data/db", "ramvault.io/reload", "signal:HUP")
	f.Add("ramvault.io/template-x", "{{ .Data }}", "ramvault.io/secret-x", "kv/x")
	f.Add("ramvault.io/refresh-", "1s", "ramvault.io/", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		c, err := Parse(map[string]string{k1: v1, k2: v2})
		if c == nil {
			t.Fatal("nil config")
		}
		if err == nil {
			for _, s := range c.Secrets {
				if !isSecretName(s.Name) || s.Path == "" && s.Template == "" {
					t.Fatalf("accepted secret %+v", s)
				}
			}
		} else if len(err.(ErrorList)) == 0 {
			t.Fatal("empty error list")
		}
	})
}

func TestParseSizeRejectsWhatWouldOverflow(t *testing.T) {
	for _, v := range []string{"9007199254740992Gi", "8796093022208Mi", "9223372036854775807Ki"} {
		if n, err := ParseSize(v); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error (the product overflows int64)", v, n)
		}
	}
	if _, err := Parse(map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-a": "secret/a", "ramvault.io/volume-size": "18014398509486080Ki"}); err == nil {
		t.Error("volume-size 18014398509486080Ki (2^64 bytes + 4Mi) was accepted: it wraps to 4Mi and must be refused")
	}
	if n, err := ParseSize("64Mi"); err != nil || n != 64<<20 {
		t.Errorf("ParseSize(64Mi) = %d, %v", n, err)
	}
}

func TestParseRefusesAnOverlongKeyQuickly(t *testing.T) {
	long := Prefix + strings.Repeat("secret-x", 1<<17) // 1 MiB
	start := time.Now()
	_, err := Parse(map[string]string{Prefix + "inject": "true", long: "kv/a"})
	var errs ErrorList
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("Parse = %v, want an error for the overlong key", err)
	}
	if n := len(err.Error()); n > 1024 {
		t.Errorf("the error is %d bytes: it must not echo the key", n)
	}
	if !strings.Contains(err.Error(), "at most 63 characters") {
		t.Errorf("error %q does not say the limit", err)
	}
	t.Logf("parsed a 1 MiB key in %v", time.Since(start))
}

// A template is kept as written, its surrounding whitespace too (the
// newline a YAML block scalar ends with is in the file, as consul-template
// writes it); the other values are trimmed.
func TestParseKeepsATemplateAsWritten(t *testing.T) {
	a, err := Parse(map[string]string{Prefix + "inject": "true", Prefix + "role": " web \n",
		Prefix + "template-cfg": "  {{ \"x\" }}\n\n"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Role != "web" {
		t.Errorf("role %q, want it trimmed", a.Role)
	}
	if len(a.Secrets) != 1 || a.Secrets[0].Template != "  {{ \"x\" }}\n\n" {
		t.Fatalf("template %+v, want it as written", a.Secrets)
	}
}
