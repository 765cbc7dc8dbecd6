package spec

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/template"

	"github.com/ramvault/ramvault/pkg/tmpl"
)

// TemplateFuncs is the documented function set of secret templates. The
// injector parses templates with it at admission; the agent executes them.
func TemplateFuncs() template.FuncMap {
	return template.FuncMap{
		"base64":    func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64dec": func(s string) (string, error) { b, err := base64.StdEncoding.DecodeString(s); return string(b), err },
		"json":      func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
		"toYAML":    func(v any) (string, error) { return YAML(v) },
		"trim":      strings.TrimSpace,
		"lower":     strings.ToLower,
		"upper":     strings.ToUpper,
		"default": func(def string, v any) string {
			if s, ok := v.(string); ok && s != "" {
				return s
			}
			if v != nil {
				if _, isStr := v.(string); !isStr {
					return fmt.Sprint(v)
				}
			}
			return def
		},
		"pemCert":  func(d map[string]any) (string, error) { return pemField(d, "certificate") },
		"pemKey":   func(d map[string]any) (string, error) { return pemField(d, "private_key") },
		"pemChain": pemChain,
	}
}

func pemField(d map[string]any, key string) (string, error) {
	s, _ := d[key].(string)
	if s == "" {
		return "", fmt.Errorf("no %q in the secret (is it a PKI issue response?)", key)
	}
	return strings.TrimRight(s, "\n") + "\n", nil
}

// pemChain is the certificate followed by its CA chain (or issuing CA).
func pemChain(d map[string]any) (string, error) {
	out, err := pemField(d, "certificate")
	if err != nil {
		return "", err
	}
	if chain, ok := d["ca_chain"].([]any); ok && len(chain) > 0 {
		for _, c := range chain {
			if s, ok := c.(string); ok && s != "" {
				out += strings.TrimRight(s, "\n") + "\n"
			}
		}
		return out, nil
	}
	if ca, ok := d["issuing_ca"].(string); ok && ca != "" {
		out += strings.TrimRight(ca, "\n") + "\n"
	}
	return out, nil
}

// YAML renders a secret's data as YAML: keys sorted, scalars as JSON strings
// (a YAML subset that every parser reads the same way), nested values in flow
// style. No YAML library: the agent stays small.
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

// checkSecretTemplate parses the template of a file with secret-<name>:
// dot is that one secret.
func checkSecretTemplate(src string) error {
	if _, err := template.New("t").Option("missingkey=error").Funcs(TemplateFuncs()).Parse(src); err != nil {
		return fmt.Errorf("template does not parse: %v", strings.TrimPrefix(err.Error(), "template: t:"))
	}
	return nil
}

// checkDependencyTemplate checks a template-only file's consul-template
// template with pkg/tmpl, the agent's engine: syntax, functions (none that
// reads files, the environment or runs commands), and the Vault paths and
// k=v arguments of its secret calls. Every problem, on one line.
func checkDependencyTemplate(src string, opts tmpl.Options) error {
	err := tmpl.Check("template", src, opts)
	if err == nil {
		return nil
	}
	var list tmpl.ErrorList
	if !errors.As(err, &list) {
		return fmt.Errorf("template does not parse: %v", err)
	}
	msgs := make([]string, len(list))
	for i, e := range list {
		msgs[i] = strings.TrimPrefix(e.Error(), "template:")
	}
	return fmt.Errorf("template does not parse: %s", strings.Join(msgs, "; "))
}
