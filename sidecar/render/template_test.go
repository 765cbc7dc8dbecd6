package render

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpl"
)

const planted = "hunter2-planted"

// Template errors name the template, the position and the field; the
// value never (text/template's own messages print it: "range can't
// iterate over hunter2").
func TestTemplateErrorsNeverHoldTheValue(t *testing.T) {
	data := map[string]any{"password": planted, "n": "12x", "list": []any{planted}}
	cases := []struct {
		name, tmpl string
		want       []string // in the error
	}{
		{"range over a string", `{{ range .Data.password }}x{{ end }}`, []string{`template of secret "db"`, "ramvault.io/template-db:1:", "<.Data.password>"}},
		{"a function's error", `{{ base64dec .Data.password }}`, []string{"ramvault.io/template-db:1:", "base64dec"}},
		{"index out of range", `{{ index .Data.list 3 }}`, []string{"index"}},
		{"comparison of the value", `{{ if lt .Data.password 3 }}x{{ end }}`, []string{"lt"}},
		{"a missing key is named (it is in the template)", `{{ .Data.nope }}`, []string{"nope", "<.Data.nope>"}},
		{"a field of a string", "line one\n{{ .Data.password.x }}", []string{"ramvault.io/template-db:2:"}},
		{"slice of the value", `{{ slice .Data.password 1 2 3 }}`, []string{"slice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: tc.tmpl}, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Render(Input{Data: data})
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), planted) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the value is in the error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want %q in it", err, w)
				}
			}
		})
	}
}

func TestTemplateOutputIsBounded(t *testing.T) {
	r, err := New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ range .Data.list }}{{ $.Data.password }}{{ end }}`}, Limits{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]any, 100)
	_, err = r.Render(Input{Data: map[string]any{"password": planted, "list": list}})
	if !errors.Is(err, tmpl.ErrOutputLimit) || strings.Contains(err.Error(), planted) {
		t.Fatalf("err %v", err)
	}
	list = list[:10]
	if out, err := r.Render(Input{Data: map[string]any{"password": planted, "list": list}}); err != nil || len(out) != 10*len(planted) {
		t.Fatalf("within the bound: %d bytes, %v", len(out), err)
	}
}

// A template that would run for minutes stops at a limit (pkg/tmpl's steps
// or time), well within a second.
func TestTemplateRenderTimeIsBounded(t *testing.T) {
	r, err := New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ range .Data.list }}{{ range $.Data.list }}x{{ end }}{{ end }}`},
		Limits{MaxBytes: 1 << 30, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]any, 20000) // 400 million writes
	start := time.Now()
	_, err = r.Render(Input{Data: map[string]any{"list": list}})
	if !errors.Is(err, tmpl.ErrLimit) {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s", took)
	}
}
