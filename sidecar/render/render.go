// Package render turns a secret's data into the content of its file: json,
// yaml, dotenv, properties, one raw value, or a template.
package render

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpl"
	"github.com/ramvault/ramvault/sidecar/clock"
)

// Renderer turns one secret's data into file content, in the secret's
// format. Templates are parsed once, by New.
type Renderer struct {
	secret spec.Secret
	tmpl   *tmpl.Template
	limits Limits
}

// Limits bound what a template may cost.
type Limits struct {
	MaxBytes int           // of the output; 0: DefaultMaxBytes
	Timeout  time.Duration // of one execution; 0: DefaultTimeout
	Clock    clock.Clock   // of the template's timestamp; nil: the real clock
}

// Defaults of Limits: a secret file is a few KiB; a template renders in
// microseconds.
const (
	DefaultMaxBytes = 1 << 20
	DefaultTimeout  = time.Second
)

// Input is what a file renders from: its own secret's data (KV v2
// unwrapped) and lease, and, for a template, the answers to its secret,
// pkiCert and ref calls.
type Input struct {
	Data          map[string]any // nil for a template-only file
	LeaseID       string
	LeaseDuration time.Duration
	Renewable     bool
	Lookup        tmpl.Lookup
}

// New is the renderer of s; it fails on a template that does not parse.
func New(s spec.Secret, l Limits) (*Renderer, error) {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	r := &Renderer{secret: s, limits: l}
	if s.Format == spec.FormatTemplate {
		t, err := spec.ParseTemplate(s, tmpl.Limits{Output: int64(l.MaxBytes), Time: l.Timeout})
		if err != nil {
			return nil, fmt.Errorf("template of secret %q: %w", s.Name, err)
		}
		r.tmpl = t
	}
	return r, nil
}

// Template is the file's parsed template (nil for the other formats): its
// Dependencies and Refs are what the file needs besides its own secret.
func (r *Renderer) Template() *tmpl.Template { return r.tmpl }

// Render returns the file content. Errors never include secret values.
func (r *Renderer) Render(f Input) ([]byte, error) {
	switch r.secret.Format {
	case spec.FormatTemplate:
		return r.execute(f)
	case spec.FormatRaw:
		v, ok := f.Data[r.secret.Key]
		if !ok {
			return nil, fmt.Errorf("secret %q has no key %q (it has: %s); fix ramvault.io/key-%s", r.secret.Name, r.secret.Key, strings.Join(keys(f.Data), ", "), r.secret.Name)
		}
		if s, ok := v.(string); ok {
			return []byte(s), nil
		}
		return json.Marshal(v)
	case spec.FormatYAML:
		s, err := spec.YAML(f.Data)
		return []byte(s), err
	case spec.FormatDotenv:
		return flat(f.Data, func(k, v string) string { return envKey(k) + "=" + strconv.Quote(v) + "\n" })
	case spec.FormatProperties:
		return flat(f.Data, func(k, v string) string { return propEscape(k, true) + "=" + propEscape(v, false) + "\n" })
	default:
		b, err := json.MarshalIndent(f.Data, "", "  ")
		if err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// flat renders one line per key, sorted; non-string values as JSON.
func flat(m map[string]any, line func(k, v string) string) ([]byte, error) {
	var b strings.Builder
	for _, k := range keys(m) {
		v, ok := m[k].(string)
		if !ok {
			j, err := json.Marshal(m[k])
			if err != nil {
				return nil, err
			}
			v = string(j)
		}
		b.WriteString(line(k, v))
	}
	return []byte(b.String()), nil
}

// envKey makes a key a valid shell variable name: upper case, [A-Z0-9_].
func envKey(k string) string {
	var b strings.Builder
	for i, c := range strings.ToUpper(k) {
		switch {
		case c >= 'A' && c <= 'Z', c == '_', c >= '0' && c <= '9' && i > 0:
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// propEscape escapes per java.util.Properties.
func propEscape(s string, key bool) string {
	var b strings.Builder
	for i, c := range s {
		switch c {
		case '\\', '=', ':', '#', '!':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case ' ':
			if key || i == 0 {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}
