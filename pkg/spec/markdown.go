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
	return b.String()
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}
