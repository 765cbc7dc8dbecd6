package tmpl

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var writeCorpus = flag.Bool("corpus", false, "rewrite testdata/fuzz seeds")

// planted is a value no template contains; every error is checked for it and
// for its parts.
const planted = "PLANTED-s3cr3t-987654"

var plantedParts = []string{planted, "s3cr3t", "987654", "PLANTED"}

func leakData() *Secret {
	return &Secret{LeaseID: "lease-" + planted, Data: map[string]any{
		"p":      planted,
		"idx":    "987654",
		"list":   []any{planted, "b"},
		"m":      map[string]any{"k": planted, "n": map[string]any{"deep": planted}},
		"regex":  planted + "(",
		"json":   `{"a": ` + planted + `}`,
		"yaml":   "a: [" + planted,
		"b64":    planted + "!",
		"slash":  map[string]any{"a": planted, "a/b": planted},
		"number": "987654",
	}}
}

func leakLookup() Lookup {
	s := leakData()
	return Values{
		Secrets: map[string]*Secret{"read kv/a": s, `write pki/issue/x {"common_name":"a"}`: s},
		Refs:    map[string]*Secret{"r": s},
	}
}

// failingTemplates fail at render time on the planted data.
var failingTemplates = []string{
	`{{ range .Data.p }}{{ end }}`,
	`{{ range $k, $v := .Data.p }}{{ end }}`,
	`{{ range $a, $b := index .Data.list 0 }}{{ end }}`,
	`{{ index .Data.list (parseInt .Data.idx) }}`,
	`{{ index .Data.p (parseInt .Data.idx) }}`,
	`{{ slice .Data.p 1 (parseInt .Data.idx) }}`,
	`{{ index .Data.p "x" }}`,
	`{{ eq .Data.p 1 }}`,
	`{{ lt .Data.list 1 }}`,
	`{{ .Data.p.field }}`,
	`{{ (index .Data.list 0).field }}`,
	`{{ call .Data.p }}`,
	`{{ len .Data.m.k.x }}`,
	`{{ base64Decode .Data.b64 }}`,
	`{{ base64URLDecode .Data.b64 }}`,
	`{{ parseJSON .Data.json }}`,
	`{{ parseJSON .Data.p }}`,
	`{{ parseYAML .Data.yaml }}`,
	`{{ parseInt .Data.p }}`,
	`{{ parseUint .Data.p }}`,
	`{{ parseFloat .Data.p }}`,
	`{{ parseBool .Data.p }}`,
	`{{ loop .Data.p }}`,
	`{{ add .Data.p 1 }}`,
	`{{ divide 0 (parseInt .Data.idx) }}`,
	`{{ modulo 0 (parseInt .Data.idx) }}`,
	`{{ regexMatch .Data.regex "x" }}`,
	`{{ regexReplaceAll .Data.regex "x" "y" }}`,
	`{{ pkcs12 .Data.p .Data.p .Data.p }}`,
	`{{ pemCert .Data.m }}`,
	`{{ explodeMap .Data.slash }}`,
	`{{ toJSON (parseYAML "a: b") }}`,
	`{{ join "," .Data.list }}`,
	`{{ indent (parseInt .Data.idx | subtract 1000000000) .Data.p }}`,
	`{{ with secret "kv/a" }}{{ range .Data.p }}{{ end }}{{ end }}`,
	`{{ with secret "kv/a" }}{{ .Data.p.x }}{{ end }}`,
	`{{ with (ref "r") }}{{ index .Data.list 7 }}{{ end }}`,
	`{{ with pkiCert "pki/issue/x" "common_name=a" }}{{ .Cert.x }}{{ end }}`,
	`{{ template "x" .Data.p }}{{ define "x" }}{{ .y }}{{ end }}`,
	`{{ .LeaseID.x }}`,
	`{{ printf "%s" .Data.p | parseInt }}`,
	`{{ .Data.m | toYAML | parseInt }}`,
	`{{ .Data.m | toJSON | base64Decode }}`,
	`{{ not }}`,
	`{{ html .Data.p | and | parseInt }}`,
	`{{ split .Data.p }}`,
	`{{ if .Data.m.k.x }}{{ end }}`,
	`{{ with $x := .Data.p }}{{ $x.y }}{{ end }}`,
	`{{ timestamp .Data.p .Data.p }}`,
	`{{ trim .Data.p .Data.p .Data.p }}`,
}

func TestErrorsNeverPrintValues(t *testing.T) {
	for _, opts := range []Options{{}, {ErrorOnMissingKey: true}} {
		for _, src := range failingTemplates {
			tp, err := Parse("t", src, opts)
			if err != nil {
				t.Fatalf("Parse(%q): %v", src, err)
			}
			out, err := tp.Execute(Input{Dot: leakData(), Lookup: leakLookup(), Now: time.Now})
			if err == nil {
				if !opts.ErrorOnMissingKey {
					continue // a missing key is not an error by default
				}
				t.Errorf("Execute(%q) = %q, want an error", src, out)
				continue
			}
			msg := err.Error()
			for _, p := range plantedParts {
				if strings.Contains(msg, p) {
					t.Errorf("Execute(%q) error leaks %q: %s", src, p, msg)
				}
			}
			if !strings.HasPrefix(msg, "t:1:") {
				t.Errorf("Execute(%q) error does not name the template and position: %s", src, msg)
			}
		}
	}
}

func FuzzExecuteNeverLeaks(f *testing.F) {
	for _, s := range failingTemplates {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, p := range plantedParts {
			if strings.Contains(src, p[:4]) || strings.Contains(src, p[len(p)-4:]) {
				return // the template itself would carry the text
			}
		}
		tp, err := Parse("t", src, Options{Limits: Limits{Steps: 20000, Output: 1 << 16, Time: time.Second}})
		if err != nil {
			return
		}
		_, err = tp.Execute(Input{Dot: leakData(), Lookup: leakLookup()})
		if err == nil {
			return
		}
		for _, p := range plantedParts {
			if strings.Contains(err.Error(), p) {
				t.Fatalf("Execute(%q) error leaks %q: %v", src, p, err)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range append(append([]string{}, failingTemplates...),
		`{{ with secret "pki/issue/web" "common_name=a" "ttl=1h" }}{{ .Data.certificate }}{{ end }}`,
		`{{ define "a" }}{{ template "b" }}{{ end }}{{ define "b" }}{{ template "a" }}{{ end }}`,
		`{{ range 1000000000 }}{{ end }}`, `{{ secret "a//b" "x" }}`, `{{ toJson . }}{{ env "X" }}`, `{{ block "x" . }}{{ end }}`,
		`{{- range $i, $e := loop 3 -}}{{ break }}{{ end -}}`, `{{/* c */}}{{ . | printf "%v" }}`,
	) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := Parse("t", src, Options{Limits: Limits{Steps: 20000, Output: 1 << 16, Time: time.Second}})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, d := range tp.Dependencies() {
			if d.Key() == "" || validPath(d.Path) != nil {
				t.Fatalf("dependency %+v of %q is invalid", d, src)
			}
		}
		_, _ = tp.Execute(Input{Dot: leakData(), Lookup: leakLookup()})
	})
}

// TestWriteFuzzCorpus keeps testdata/fuzz seeded with the battery above
// (go test ./pkg/tmpl -run WriteFuzzCorpus -corpus).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -corpus to rewrite the seeds")
	}
	for _, target := range []string{"FuzzExecuteNeverLeaks", "FuzzParse"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range failingTemplates {
			body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
