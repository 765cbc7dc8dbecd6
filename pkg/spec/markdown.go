package spec

import (
	"fmt"
	"strings"
)

// Markdown renders the annotation reference (docs/annotations.md) from the
// table. A test fails when the committed file differs.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# ramvault annotations\n\n")
	b.WriteString("<!-- Generated from pkg/spec/table.go by `go test ./pkg/spec -update`. Do not edit. -->\n\n")
	b.WriteString("Every annotation starts with `" + Prefix + "`. Unknown `" + Prefix + "*` keys are errors (with a\n")
	b.WriteString("did-you-mean hint); every problem is reported at once, each naming its annotation.\n\n")
	section := func(title string, perSecret bool) {
		b.WriteString("## " + title + "\n\n| annotation | type | default | example | meaning |\n|---|---|---|---|---|\n")
		for _, r := range Table() {
			if r.PerSecret != perSecret {
				continue
			}
			typ := string(r.Type)
			if r.Type == TypeEnum {
				typ = "`" + strings.Join(r.Enum, "` \\| `") + "`"
			}
			name := r.Key("<name>")
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", name, typ, code(r.Default), code(r.Example), strings.ReplaceAll(r.Doc, "|", `\|`))
		}
		b.WriteString("\n")
	}
	section("Pod-wide", false)
	section("Per secret (`<name>` is the file name)", true)
	b.WriteString(`## Files from templates

A file is either one secret (` + "`secret-<name>`" + `, formatted by ` + "`format-<name>`" + ` or
` + "`template-<name>`" + `, whose dot is that secret) or a template alone (` + "`template-<name>`" + `
without ` + "`secret-<name>`" + `; it may also carry ` + "`refresh-`, `reload-` and `file-mode-<name>`" + `).
Any template may read Vault itself, as consul-template does: ` + "`secret \"<path>\"`" + ` reads
(KV v2 gives ` + "`.Data.data` and `.Data.metadata`" + `), ` + "`secret \"<path>\" \"k=v\"`" + ` and
` + "`pkiCert`" + ` write, and ` + "`ref \"<other>\"`" + ` is another secret of the Pod in the one-secret
shape. The agent makes one Vault request per distinct path and arguments in the whole
Pod (a file's own secret counts too), so cert, key and CA in three files are one issuance.
Each request keeps its own lease and schedule; when one changes, every file that uses it
is rendered again, all of them are written together (none, if one fails), and the app is
reloaded once. Functions: docs/templates.md.

`)
	return b.String()
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}
