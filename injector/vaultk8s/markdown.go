package vaultk8s

import (
	"fmt"
	"strings"
)

// Markdown renders docs/vault-k8s-annotations.md from the table. A test
// fails when the committed file differs.
func Markdown() string {
	var b strings.Builder
	count := map[Outcome]int{}
	for _, r := range Table() {
		count[r.Outcome]++
	}
	b.WriteString("# vault-k8s annotations in ramvault\n\n")
	b.WriteString("<!-- Generated from injector/vaultk8s/table.go by `go test ./injector/vaultk8s -update`. Do not edit. -->\n\n")
	b.WriteString("With `--vault-k8s-annotations`, the injector serves Pods opted in with `" + InjectAnnotation + "`\n")
	b.WriteString("(see [migrating-from-vault-k8s.md](migrating-from-vault-k8s.md)), and `ramvault migrate` rewrites\n")
	b.WriteString("manifests, by this table. Every `" + Prefix + "*` annotation is either carried over,\n")
	b.WriteString("deliberately needs nothing (the reason is given), or denies the Pod with a message naming it and\n")
	b.WriteString("the ramvault way. Empty values count as absent, as in vault-k8s. An annotation not in the table\n")
	b.WriteString("is denied as unknown.\n\n")
	fmt.Fprintf(&b, "%d annotations of vault-k8s v1.7.6: %d mapped, %d need nothing, %d denied.\n\n", len(Table()), count[Mapped], count[NoOp], count[Denied])
	b.WriteString("| annotation | outcome | ramvault | how, or why |\n|---|---|---|---|\n")
	for _, r := range Table() {
		name := r.Key("<" + r.Family + ">")
		doc := r.Doc
		if r.DeniedWhen != "" {
			other := "false"
			if r.DeniedWhen == "false" {
				other = "true"
			}
			doc = fmt.Sprintf("`%s` is denied: %s `%s` needs nothing.", r.DeniedWhen, doc, other)
		}
		way := r.Ramvault
		if r.Outcome == Denied && way != "" {
			way = "instead: " + way
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, r.Outcome, cell(way), cell(doc))
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
