package tmpl

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/templates.md")

func mustParse(t testing.TB, src string) *Template {
	t.Helper()
	tp, err := Parse("t", src, Options{})
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return tp
}

func render(t testing.TB, src string, in Input) string {
	t.Helper()
	out, err := mustParse(t, src).Execute(in)
	if err != nil {
		t.Fatalf("Execute(%q): %v", src, err)
	}
	return string(out)
}

func TestParseRefusesWithPositionAndFix(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"a syntax error names the line", "a\n{{ if }}", `t:2: syntax: missing value for if`},
		{"an unclosed action", "{{ .Data", `t:1: syntax:`},
		{"an unknown function gets the closest name", `{{ toJson . }}`, `t:1:4: at <toJson>: function "toJson" is not defined (did you mean "toJSON"?)`},
		{"a typo gets the closest name", `{{ base64Encod "x" }}`, `(did you mean "base64Encode"?)`},
		{"a far-off name points to the reference", `{{ frobnicateAll "x" }}`, `see docs/templates.md`},
		{"env is refused with the reason", `{{ env "HOME" }}`, `function "env" is not available: it reads the agent's environment`},
		{"file is refused", `{{ file "/etc/passwd" }}`, `function "file" is not available: it reads a file`},
		{"plugin is refused and names pkcs12", `{{ plugin "openssl" }}`, `pkcs12 replaces`},
		{"writeToFile is refused", `{{ "x" | writeToFile "/tmp/x" "" "" "0644" }}`, `it writes files`},
		{"sprig is refused", `{{ sprig_upper "x" }}`, `sprig is not linked`},
		{"consul functions are refused", `{{ key "a/b" }}`, `a Consul function`},
		{"the internal step counter cannot be called", `{{ _ramvaultStep 0 0 }}`, `function "_ramvaultStep" is not defined`},
		{"a path from printf is refused", `{{ with secret (printf "kv/%s" "a") }}{{ end }}`, `t:1:17: at <secret (printf "kv/%s" "a")>: argument printf "kv/%s" "a" of secret is not a string constant`},
		{"a path from a variable is refused", `{{ $p := "kv/a" }}{{ with secret $p }}{{ end }}`, `of secret is not a string constant`},
		{"a piped path is refused", `{{ "kv/a" | secret }}`, `secret cannot take its argument from a pipe`},
		{"a k=v from a field is refused", `{{ with secret "pki/issue/x" .cn }}{{ end }}`, `argument .cn of secret is not a string constant`},
		{"secret without a path", `{{ secret }}`, `secret needs a Vault path`},
		{"secret as a bare argument", `{{ toJSON secret }}`, `secret needs a Vault path`},
		{"an empty segment", `{{ secret "kv//a" }}`, `path "kv//a": has an empty segment`},
		{"a dot-dot segment", `{{ secret "kv/../sys/raw" }}`, `has a ".." segment`},
		{"a space in the path", `{{ secret "kv/a b" }}`, `has a space or non-printable character`},
		{"a control character in the path", "{{ secret \"kv/a\\x01\" }}", `non-printable`},
		{"an empty path", `{{ secret "/" }}`, `empty path`},
		{"a query on a write", `{{ secret "kv/a?version=2" "x=y" }}`, `a query string is only for reads`},
		{"a bad version", `{{ secret "kv/a?version=x" }}`, `?version=N`},
		{"an argument without =", `{{ secret "pki/issue/web" "common_name" }}`, `argument "common_name" is not k=v`},
		{"an argument with an empty key", `{{ secret "pki/issue/web" "=a" }}`, `has an empty key`},
		{"pkiCert is checked the same way", `{{ pkiCert "pki/issue/web" "cn" }}`, `argument "cn" is not k=v`},
		{"ref takes a constant", `{{ ref .x }}`, `argument .x of ref is not a string constant`},
		{"ref names a secret", `{{ ref "a/b" }}`, `ref "a/b": has '/'`},
		{"a huge constant range", `{{ range 1000000000 }}x{{ end }}`, `t:1:10: at <1000000000>: range over 1000000000 exceeds the step limit`},
		{"a huge constant loop", `{{ range loop 5 1000000000 }}x{{ end }}`, `loop 5 1000000000 exceeds the step limit`},
		{"a recursive template", `{{ define "a" }}{{ template "a" . }}{{ end }}{{ template "a" . }}`, `recursive template ("a" → "a")`},
		{"a mutually recursive template", `{{ define "a" }}{{ template "b" }}{{ end }}{{ define "b" }}{{ template "a" }}{{ end }}`, `recursive template ("a" → "b" → "a")`},
		{"an undefined template", `{{ template "nope" }}`, `template "nope" is not defined`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t", c.src, Options{})
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want %q", c.src, c.want)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want ErrorList", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse(%q):\n got %s\nwant %s", c.src, err, c.want)
			}
		})
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	_, err := Parse("t", "{{ toJson . }}\n{{ env \"X\" }}\n{{ secret \"a//b\" }}", Options{})
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for i, e := range list {
		if e.Line != i+1 {
			t.Errorf("error %d on line %d, want %d: %v", i, e.Line, i+1, e)
		}
	}
}

func TestDependencies(t *testing.T) {
	tp := mustParse(t, `
{{ with secret "secret/app" }}{{ end }}
{{ with secret "/secret/app/" }}{{ end }}
{{ with secret "pki/issue/web" "common_name=a.example" "ttl=1h" }}{{ end }}
{{ with pkiCert "pki/issue/web" " ttl = 1h" "common_name=a.example" }}{{ end }}
{{ with secret "transit/decrypt/k" "" }}{{ end }}
{{ with secret "kv/app?version=3" }}{{ end }}
{{ if false }}{{ with secret "database/creds/ro" }}{{ end }}{{ end }}
{{ define "x" }}{{ ref "db" }}{{ end }}{{ ref "db" }}{{ ref "api" }}`)
	var got []string
	for _, d := range tp.Dependencies() {
		got = append(got, d.Key()+" "+d.Kind.String())
	}
	want := []string{
		"read database/creds/ro secret",
		"read kv/app?version=3 secret",
		"read secret/app secret",
		`write pki/issue/web {"common_name":"a.example","ttl":"1h"} pkiCert`,
		"write transit/decrypt/k {} secret",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Dependencies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := strings.Join(tp.Refs(), ","); r != "api,db" {
		t.Fatalf("Refs = %s, want api,db", r)
	}
}

func TestKeyIsTheSameAcrossTemplates(t *testing.T) {
	a := mustParse(t, `{{ with secret "pki/issue/web" "common_name=a" "ttl=1h" }}{{ .Data.certificate }}{{ end }}`)
	b := mustParse(t, `{{ with secret "pki/issue/web" "ttl=1h" "common_name=a" }}{{ .Data.private_key }}{{ end }}`)
	if a.Dependencies()[0].Key() != b.Dependencies()[0].Key() {
		t.Fatalf("%s != %s", a.Dependencies()[0].Key(), b.Dependencies()[0].Key())
	}
}

func TestOneSecretTemplateStaysShort(t *testing.T) {
	dot := &Secret{Data: map[string]any{"user": "app", "password": "pw"}, LeaseID: "l1", LeaseDuration: 3600, Renewable: true}
	src := `postgres://{{ .Data.user }}:{{ .Data.password }}@db/{{ .LeaseID }}/{{ .LeaseDuration }}/{{ .Renewable }}`
	tp := mustParse(t, src)
	if !tp.UsesDot() || len(tp.Dependencies()) != 0 {
		t.Fatalf("UsesDot=%v deps=%v", tp.UsesDot(), tp.Dependencies())
	}
	if got := render(t, src, Input{Dot: dot}); got != "postgres://app:pw@db/l1/3600/true" {
		t.Fatal(got)
	}
	if mustParse(t, `{{ with secret "kv/a" }}{{ .Data.x }}{{ end }}`).UsesDot() {
		t.Fatal("a template reading dot only inside with does not use the top-level dot")
	}
}

func TestSecretsRefsAndKVv2(t *testing.T) {
	kv2 := &Secret{Data: map[string]any{"data": map[string]any{"host": "db.internal"}, "metadata": map[string]any{"version": "4"}}}
	creds := &Secret{LeaseID: "database/creds/ro/abc", LeaseDuration: 60, Renewable: true, Data: map[string]any{"username": "v-ro", "password": "p"}}
	in := Input{Lookup: Values{
		Secrets: map[string]*Secret{"read secret/app": kv2, "read database/creds/ro": creds},
		Refs:    map[string]*Secret{"api": {Data: map[string]any{"token": "t0k"}}},
	}}
	src := `{{ with secret "secret/app" }}{{ .Data.data.host }} v{{ .Data.metadata.version }}{{ end }} ` +
		`{{ with secret "database/creds/ro" }}{{ .Data.username }}:{{ .Data.password }} {{ .LeaseDuration }}{{ end }} ` +
		`{{ (ref "api").Data.token }}`
	if got := render(t, src, in); got != "db.internal v4 v-ro:p 60 t0k" {
		t.Fatal(got)
	}
}

func TestLookupErrorsAreWrappedNotPrinted(t *testing.T) {
	boom := errors.New("vault said: password=hunter2")
	tp := mustParse(t, `{{ with secret "kv/a" }}{{ end }}`)
	_, err := tp.Execute(Input{Lookup: failing{boom}})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !errors.Is(err, boom) {
		t.Fatalf("err = %v (Is boom: %v)", err, errors.Is(err, boom))
	}
	if !strings.Contains(err.Error(), `secret "kv/a": not available`) {
		t.Fatal(err)
	}
}

type failing struct{ err error }

func (f failing) Secret(Dependency) (*Secret, error) { return nil, f.err }
func (f failing) Ref(string) (*Secret, error)        { return nil, f.err }

func TestMissingKey(t *testing.T) {
	dot := &Secret{Data: map[string]any{}}
	if got := render(t, `[{{ .Data.nokey }}]`, Input{Dot: dot}); got != "[<no value>]" {
		t.Fatalf("missingkey=zero (Vault Agent's default) prints %q", got)
	}
	tp, err := Parse("t", `{{ .Data.nokey }}`, Options{ErrorOnMissingKey: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Execute(Input{Dot: dot})
	if err == nil || err.Error() != `t:1:9: at <.Data.nokey>: map has no entry for key "nokey"` {
		t.Fatalf("err = %v", err)
	}
}

func TestDelimiters(t *testing.T) {
	tp, err := Parse("t", `[[ .Data.a ]] {{ literal }}`, Options{LeftDelim: "[[", RightDelim: "]]"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tp.Execute(Input{Dot: &Secret{Data: map[string]any{"a": "x"}}})
	if err != nil || string(out) != "x {{ literal }}" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestConcurrentExecute(t *testing.T) {
	tp := mustParse(t, `{{ range loop 100 }}{{ . }}{{ end }}`)
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() {
			out, err := tp.Execute(Input{})
			if err != nil {
				done <- err.Error()
				return
			}
			done <- string(out)
		}()
	}
	first := <-done
	for i := 1; i < 8; i++ {
		if got := <-done; got != first {
			t.Fatalf("renders differ: %q vs %q", got, first)
		}
	}
}

func TestTemplateReferenceIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "templates.md")
	want := Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/tmpl -update)", err)
	}
	if string(got) != want {
		t.Fatal("docs/templates.md is stale: run go test ./pkg/tmpl -update")
	}
}

func TestEveryFunctionIsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range functions() {
		if f.Doc == "" || f.Origin == "" || f.make == nil {
			t.Errorf("function %s lacks a doc, an origin or an implementation", f.Name)
		}
		if seen[f.Name] {
			t.Errorf("function %s is listed twice", f.Name)
		}
		seen[f.Name] = true
		if _, ok := refusedFuncs[f.Name]; ok {
			t.Errorf("function %s is both provided and refused", f.Name)
		}
	}
}
