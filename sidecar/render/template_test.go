package render

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/sidecar/clock"
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
		{"range over a string", `{{ range .Data.password }}x{{ end }}`, []string{`template of secret "db"`, "db:1:", "<.Data.password>", "range can't iterate over this value (not shown)"}},
		{"a function's error", `{{ base64dec .Data.password }}`, []string{"db:1:", "error calling base64dec (its message is not shown"}},
		{"index out of range", `{{ index .Data.list 3 }}`, []string{"error calling index"}},
		{"comparison of the value", `{{ if lt .Data.password 3 }}x{{ end }}`, []string{"error calling lt"}},
		{"a missing key is named (it is in the template)", `{{ .Data.nope }}`, []string{`map has no entry for key "nope"`, "<.Data.nope>"}},
		{"a field of a string", "line one\n{{ .Data.password.x }}", []string{"db:2:", "can't evaluate field x in type"}},
		{"call of the value", `{{ call .Data.password }}`, []string{"error calling call"}},
		{"slice of the value", `{{ slice .Data.password 1 2 3 }}`, []string{"error calling slice"}},
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

// A key named in a message but not in the template's source (so computed
// from the data) is not shown: it could be a value.
func TestAKeyNotInTheTemplateIsNotNamed(t *testing.T) {
	err := errString(`template: db:1:2: executing "db" at <.Data>: map has no entry for key "` + planted + `"`)
	if got := safeExecError(err, `{{ .Data }}`); strings.Contains(got, planted) || !strings.Contains(got, "db:1:2") {
		t.Errorf("got %s", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestTemplateOutputIsBounded(t *testing.T) {
	r, err := New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ range .Data.list }}{{ $.Data.password }}{{ end }}`}, Limits{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]any, 100)
	_, err = r.Render(Input{Data: map[string]any{"password": planted, "list": list}})
	if err == nil || !strings.Contains(err.Error(), "output over 1000 bytes") || strings.Contains(err.Error(), planted) {
		t.Fatalf("err %v", err)
	}
	list = list[:10]
	if out, err := r.Render(Input{Data: map[string]any{"password": planted, "list": list}}); err != nil || len(out) != 10*len(planted) {
		t.Fatalf("within the bound: %d bytes, %v", len(out), err)
	}
}

// A template that takes too long is given up at the timeout (on the
// renderer's clock) and stops at its next write.
func TestTemplateRenderTimeIsBounded(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	r, err := New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ range .Data.list }}{{ range $.Data.list }}x{{ end }}{{ end }}`},
		Limits{MaxBytes: 1 << 30, Timeout: time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]any, 20000) // 400 million writes
	done := make(chan error, 1)
	go func() {
		_, err := r.Render(Input{Data: map[string]any{"list": list}})
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !clk.BlockUntil(ctx, 1) {
		t.Fatal("the render set no timeout")
	}
	clk.Advance(time.Second)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not rendered within 1s") {
			t.Fatalf("err %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the render did not give up at its timeout")
	}
}
