package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ramvault/ramvault/pkg/tmpl"
)

// templateOnlyRow says which per-secret annotations a template-only file
// (ramvault.io/template-<name> without secret-<name>) may carry; method,
// params, format and key describe the file's own secret, which it has not.
func templateOnlyRow(family string) bool {
	switch family {
	case "template", "refresh", "reload", "file-mode", "file-name", "mount-path",
		"template-left-delim", "template-right-delim", "error-on-missing-key":
		return true
	}
	return false
}

// TemplateName is the name a secret's template is parsed under: the
// annotation, so every error of the template names it.
func TemplateName(secret string) string { return Prefix + "template-" + secret }

// ParseTemplate parses a secret's template as the agent runs it; the injector
// checks it the same way (checkTemplate). A one-secret template (with
// secret-<name>) keeps missingkey=error, as before pkg/tmpl: a typo in a key
// fails the render instead of writing "<no value>". A template-only file may
// have its own delimiters, and error-on-missing-key-<name>: "false" for
// consul-template's "<no value>" (what vault-k8s Pods are translated to).
func ParseTemplate(s Secret, l tmpl.Limits) (*tmpl.Template, error) {
	opts := templateOptions(s)
	if p := s.parsed; p != nil && p.src == s.Template && p.opts == opts {
		if t, ok := p.t.WithLimits(l); ok {
			return t, nil
		}
	}
	opts.Limits = l
	return tmpl.Parse(TemplateName(s.Name), s.Template, opts)
}

// templateOptions are the options a secret's template is parsed with (no
// limits: the caller's).
func templateOptions(s Secret) tmpl.Options {
	if s.TemplateOnly() {
		return tmpl.Options{LeftDelim: s.LeftDelim, RightDelim: s.RightDelim, ErrorOnMissingKey: !s.MissingKeyZero}
	}
	return tmpl.Options{ErrorOnMissingKey: true}
}

// parsedTemplate is a template Parse checked, with what it was parsed from.
type parsedTemplate struct {
	opts tmpl.Options
	src  string
	t    *tmpl.Template
}

// checkTemplate parses and checks one secret's template: syntax, functions,
// the Vault paths of secret/pkiCert, refs to secrets the Pod defines
// (defined reports whether ramvault.io/secret-<ref> exists), and a
// template-only file that reads `.`. Every error names the annotation.
// It returns the parsed template when it parsed.
func checkTemplate(s Secret, defined func(ref string) bool) (ErrorList, *tmpl.Template) {
	key := TemplateName(s.Name)
	t, err := ParseTemplate(s, tmpl.Limits{})
	if err != nil {
		var list tmpl.ErrorList
		if !errors.As(err, &list) {
			return ErrorList{{key, err.Error()}}, nil
		}
		var errs ErrorList
		for _, e := range list {
			// The tmpl error starts with the template's name, which is
			// the annotation already.
			errs = append(errs, Error{key, templateError(e)})
		}
		return errs, nil
	}
	var errs ErrorList
	for _, r := range t.Refs() {
		if !defined(r) {
			errs = append(errs, Error{key, fmt.Sprintf("ref %q: the Pod defines no %s; add it with its Vault path, or fix the name", r, Prefix+"secret-"+r)})
		}
	}
	if s.Path == "" && t.UsesDot() {
		errs = append(errs, Error{key, fmt.Sprintf("the template reads `.`, which is empty in a template-only file: read secrets with secret \"<path>\" or ref \"<name>\", or add %s", Prefix+"secret-"+s.Name)})
	}
	return errs, t
}

// templateError is a tmpl error without the template's name (the field
// names the annotation already): "line 3, column 9: at <.Data.x>: …".
func templateError(e *tmpl.Error) string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ", column %d", e.Col)
		}
		b.WriteString(": ")
	}
	if e.Context != "" {
		b.WriteString("at <" + e.Context + ">: ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// YAML renders a secret's data as YAML: keys sorted, scalars as JSON strings
// (a YAML subset that every parser reads the same way), nested values in flow
// style. No YAML library: the agent stays small. It is format yaml; in a
// template, `toYAML` is consul-template's (gopkg.in/yaml.v2 output).
func YAML(v any) (string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		b, err := json.Marshal(v)
		return string(b) + "\n", err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		kj, _ := json.Marshal(k)
		vj, err := json.Marshal(m[k])
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: %s\n", kj, vj)
	}
	return b.String(), nil
}
