package spec

import (
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/tmpl"
)

// The agent renders with the template Parse checked, not a second parse of
// it; a changed template or step limit is parsed anew.
func TestParseTemplateReusesTheTemplateParseChecked(t *testing.T) {
	src := strings.Repeat(`{{ with secret "secret/data/app" }}{{ .Data.data.user | toUpper }}:{{ .Data.data.pw | base64Encode }}{{ end }}
`, 20)
	a, err := Parse(map[string]string{"ramvault.io/inject": "true", "ramvault.io/template-app": src})
	if err != nil {
		t.Fatal(err)
	}
	s := a.Secrets[0]
	l := tmpl.Limits{Output: 1 << 20, Time: time.Second}
	got, err := ParseTemplate(s, l)
	if err != nil {
		t.Fatal(err)
	}
	values := oneSecret{&tmpl.Secret{Data: map[string]any{"data": map[string]any{"user": "u", "pw": "p"}}}}
	out, err := got.Execute(tmpl.Input{Lookup: values})
	if err != nil || !strings.HasPrefix(string(out), "U:cA==\n") {
		t.Fatalf("render of the reused template: %q, %v", out, err)
	}

	reuse := testing.AllocsPerRun(20, func() { _, _ = ParseTemplate(s, l) })
	fresh := s
	fresh.parsed = nil
	parse := testing.AllocsPerRun(20, func() { _, _ = ParseTemplate(fresh, l) })
	if reuse*20 > parse {
		t.Errorf("ParseTemplate of a checked secret: %.0f allocations, a parse %.0f: it parsed again", reuse, parse)
	}

	changed := s
	changed.Template = `{{ with secret "secret/data/app" }}{{ .Data.data.user }}{{ end }}`
	ct, err := ParseTemplate(changed, l)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ct.Execute(tmpl.Input{Lookup: values}); err != nil || string(out) != "u" {
		t.Errorf("a changed template rendered %q, %v: the old parse was used", out, err)
	}
	if _, err := ParseTemplate(s, tmpl.Limits{Steps: 10}); err != nil {
		t.Errorf("another step limit: %v", err)
	}
}

// oneSecret answers every secret call with the same secret.
type oneSecret struct{ s *tmpl.Secret }

func (o oneSecret) Secret(tmpl.Dependency) (*tmpl.Secret, error) { return o.s, nil }
func (o oneSecret) Ref(string) (*tmpl.Secret, error)             { return o.s, nil }
