package tmpl

import (
	"fmt"
	"sort"
	"strings"
)

// Markdown renders the template reference (docs/templates.md) from the
// function table. A test fails when the committed file differs.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# ramvault templates\n\n")
	b.WriteString("<!-- Generated from pkg/tmpl/funcs.go by `go test ./pkg/tmpl -update`. Do not edit. -->\n\n")
	b.WriteString("Templates are Go `text/template` with consul-template's functions: a `vault.hashicorp.com/agent-inject-template-*`\n")
	b.WriteString("renders as in Vault Agent 1.21.0 (consul-template v0.41.1). Every `secret`, `pkiCert` and `ref` argument is a\n")
	b.WriteString("string constant: the agent fetches every dependency once for the whole Pod before rendering, and the same path\n")
	b.WriteString("and arguments in several files is one request (one issuance). A missing key prints `<no value>` unless\n")
	b.WriteString("error-on-missing-key is set. Each render is bounded (output size, work, steps, time) and its errors name the\n")
	b.WriteString("template, the position and the expression, never a value. A template is rendered as written, its leading and\n")
	b.WriteString("trailing whitespace too (a YAML `|` block ends the file with a newline, as in Vault Agent; `|-` does not). The\n")
	b.WriteString("corpus of vault-k8s manifests renders byte for byte as Vault Agent renders it (`TestVaultK8sManifestsRenderAsVaultAgentDoes`).\n\n")
	b.WriteString("In ramvault's own annotations, `ramvault.io/template-<name>` with `ramvault.io/secret-<name>` renders that secret\n")
	b.WriteString("as `.` (KV v2 unwrapped: `.Data` is the key/values) and a missing key is an error; without it the file is\n")
	b.WriteString("template-only (`.` is empty). Either may call `secret`, `pkiCert` and `ref \"<other>\"` (another secret of the\n")
	b.WriteString("Pod, in the one-secret shape). A file's own secret and a template's `secret` of the same path and arguments\n")
	b.WriteString("are one request. Each request keeps its own lease and schedule; when one changes, every file that uses it is\n")
	b.WriteString("rendered again and all of them are written as one set (none if any fails), then the app is reloaded once.\n")
	b.WriteString("`toYAML` is consul-template's (yaml.v2 output); the JSON-scalar YAML ramvault's `toYAML` wrote before is\n")
	b.WriteString("`ramvault.io/format-<name>: yaml`.\n\n")
	b.WriteString("## Functions\n\n| function | arguments | from | meaning |\n|---|---|---|---|\n")
	for _, f := range functions() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, mdCode(f.Args), f.Origin, mdEscape(f.Doc))
	}
	b.WriteString("\nAlso text/template's `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `index`, `slice`, `len`, `call`.\n\n")
	b.WriteString("## Not available\n\nThese names are refused when the template is parsed, with the reason:\n\n| function | why, and what to use |\n|---|---|\n")
	names := make([]string, 0, len(refusedFuncs))
	for n := range refusedFuncs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "| `%s` | %s |\n", n, mdEscape(refusedFuncs[n]))
	}
	b.WriteString("| `sprig_*` | sprig is not linked into the agent (binary size) |\n")
	return b.String()
}

func mdCode(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
