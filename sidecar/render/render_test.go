package render

import (
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestRenderFormats(t *testing.T) {
	data := map[string]any{"username": "u", "password": `p"w=1`, "port": float64(5432)}
	cases := []struct {
		name string
		s    spec.Secret
		want string
	}{
		{"json is indented and sorted", spec.Secret{Format: spec.FormatJSON}, "{\n  \"password\": \"p\\\"w=1\",\n  \"port\": 5432,\n  \"username\": \"u\"\n}\n"},
		{"yaml quotes every scalar", spec.Secret{Format: spec.FormatYAML}, "\"password\": \"p\\\"w=1\"\n\"port\": 5432\n\"username\": \"u\"\n"},
		{"dotenv upper-cases keys and quotes values", spec.Secret{Format: spec.FormatDotenv}, "PASSWORD=\"p\\\"w=1\"\nPORT=\"5432\"\nUSERNAME=\"u\"\n"},
		{"properties escape separators", spec.Secret{Format: spec.FormatProperties}, "password=p\"w\\=1\nport=5432\nusername=u\n"},
		{"raw writes one value as is", spec.Secret{Format: spec.FormatRaw, Key: "password"}, `p"w=1`},
		{"a template sees the data and lease", spec.Secret{Format: spec.FormatTemplate, Template: `{{ .Data.username }}:{{ .LeaseDuration }}:{{ base64 "x" }}`}, "u:60:eA=="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Name = "s"
			r, err := New(tc.s, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Render(Input{Data: data, LeaseDuration: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRenderErrorsNameTheProblemNotTheValues(t *testing.T) {
	data := map[string]any{"password": "hunter2"}
	r, _ := New(spec.Secret{Name: "db", Format: spec.FormatRaw, Key: "pass"}, Limits{})
	_, err := r.Render(Input{Data: data})
	if err == nil || !strings.Contains(err.Error(), `no key "pass"`) || !strings.Contains(err.Error(), "ramvault.io/key-db") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	r, _ = New(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ .Data.missing }}`}, Limits{})
	if _, err := r.Render(Input{Data: data}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("missing key in template: err = %v", err)
	}
}
