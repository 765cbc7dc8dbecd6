package spec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
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
// template: its syntax, its functions, and the Vault paths of its secret
// calls. Temporary: pkg/tmpl (the consul-template engine, with dependency
// extraction) replaces the body of this function with its own check, a
// one-line change; nothing else in spec knows how these templates are read.
func checkDependencyTemplate(src string) error {
	t, err := template.New("t").Funcs(consulTemplateFuncs()).Parse(src)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: t:")
		if strings.Contains(msg, "not defined") {
			msg += " (consul-template functions that read files, the environment or Consul, or run commands, are not available)"
		}
		return fmt.Errorf("template does not parse: %s", msg)
	}
	var bad []string
	walkSecretCalls(t.Tree.Root, func(p string) {
		if !isVaultPath(strings.Trim(p, "/")) {
			bad = append(bad, fmt.Sprintf("%q", p))
		}
	})
	if len(bad) > 0 {
		return fmt.Errorf("secret %s: not a Vault path", strings.Join(bad, ", "))
	}
	return nil
}

// consulTemplateNames are consul-template's functions that a template-only
// file may call: Vault's and the pure ones. Those that read files (file),
// the environment (env, mustEnv, envOrDefault), Consul (key, service…) or
// run commands (plugin, writeToFile) are left out.
var consulTemplateNames = []string{
	"secret", "secrets", "pkiCert",
	"base64Decode", "base64Encode", "base64URLDecode", "base64URLEncode",
	"toJSON", "toJSONPretty", "toUnescapedJSON", "toUnescapedJSONPretty", "toYAML", "toTOML",
	"parseJSON", "parseYAML", "parseBool", "parseFloat", "parseInt", "parseUint",
	"split", "splitToMap", "join", "contains", "containsAll", "containsAny", "containsNone", "containsNotAll",
	"replaceAll", "regexMatch", "regexReplaceAll", "trimSpace", "trim", "trimPrefix", "trimSuffix",
	"toLower", "toUpper", "toTitle", "indent", "in", "loop", "explode", "explodeMap",
	"sha256Hex", "md5sum", "hmacSHA256Hex", "timestamp", "byKey", "byTag",
	"add", "subtract", "multiply", "divide", "modulo", "minimum", "maximum",
}

// consulTemplateFuncs is consulTemplateNames as a function map for
// parsing: the functions are never called.
func consulTemplateFuncs() template.FuncMap {
	m := template.FuncMap{}
	for _, n := range consulTemplateNames {
		m[n] = func(...any) (any, error) { return nil, nil }
	}
	return m
}

// walkSecretCalls calls f with the literal path of every `secret "<path>"`
// in the tree.
func walkSecretCalls(n parse.Node, f func(string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walkSecretCalls(c, f)
			}
		}
	case *parse.ActionNode:
		walkSecretCalls(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkSecretCalls(c, f)
		}
	case *parse.CommandNode:
		if len(n.Args) >= 2 {
			if id, ok := n.Args[0].(*parse.IdentifierNode); ok && (id.Ident == "secret" || id.Ident == "secrets") {
				if s, ok := n.Args[1].(*parse.StringNode); ok {
					f(s.Text)
				}
			}
		}
		for _, a := range n.Args {
			walkSecretCalls(a, f)
		}
	case *parse.IfNode:
		walkSecretCalls(n.Pipe, f)
		walkSecretCalls(n.List, f)
		walkSecretCalls(n.ElseList, f)
	case *parse.RangeNode:
		walkSecretCalls(n.Pipe, f)
		walkSecretCalls(n.List, f)
		walkSecretCalls(n.ElseList, f)
	case *parse.WithNode:
		walkSecretCalls(n.Pipe, f)
		walkSecretCalls(n.List, f)
		walkSecretCalls(n.ElseList, f)
	}
}
