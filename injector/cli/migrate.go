package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ramvault/ramvault/injector/vaultk8s"
	"github.com/ramvault/ramvault/pkg/spec"
)

const migrateUsage = `ramvault migrate -f FILE|-: rewrite vault-k8s annotations as ramvault.io/ ones.

The Pods and pod templates opted in with vault.hashicorp.com/agent-inject
get the ramvault.io/ annotations that do the same (docs/vault-k8s-annotations.md)
in place of their vault.hashicorp.com/ ones; every other byte of the file is
kept where the annotations are in block style. What cannot be carried over is
reported, each naming its annotation and the ramvault way; then the exit code
is 1 and nothing is printed.
`

// runMigrate runs `ramvault migrate` and returns the exit code.
func runMigrate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ramvault migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), migrateUsage); fs.PrintDefaults() }
	var file string
	fs.StringVar(&file, "f", "", "manifest file, - for standard input (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 || file == "" {
		fmt.Fprintln(stderr, "ramvault migrate: -f FILE is required (- for standard input)")
		return exitUsage
	}
	in := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		defer f.Close()
		in = f
	}
	src, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	out, problems := migrate(ctx, src)
	if len(problems) > 0 {
		fmt.Fprintln(stderr, strings.Join(problems, "\n"))
		return exitInvalid
	}
	stdout.Write(out)
	return exitOK
}

// migrate rewrites every document of src, returning the file or every
// problem.
func migrate(ctx context.Context, src []byte) ([]byte, []string) {
	var out bytes.Buffer
	var problems []string
	for i, doc := range splitDocuments(src) {
		if err := ctx.Err(); err != nil {
			return nil, []string{err.Error()}
		}
		res, errs := migrateDocument(i+1, doc.body)
		problems = append(problems, errs...)
		out.Write(doc.sep)
		out.Write(res)
	}
	return out.Bytes(), problems
}

// document is one document of a YAML stream: the separator line before it
// (empty for the first), and its text.
type document struct{ sep, body []byte }

// splitDocuments splits a YAML stream at its "---" lines, keeping every byte.
func splitDocuments(src []byte) []document {
	var docs []document
	cur := document{}
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line = src[:i+1]
		}
		src = src[len(line):]
		if t := bytes.TrimRight(line, "\r\n"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, cur)
			cur = document{sep: line}
			continue
		}
		cur.body = append(cur.body, line...)
	}
	return append(docs, cur)
}

// migrateDocument rewrites the vault-k8s annotations of one document.
func migrateDocument(n int, body []byte) ([]byte, []string) {
	var root yaml.Node
	if err := yaml.Unmarshal(body, &root); err != nil {
		return nil, []string{fmt.Sprintf("document %d: %v", n, err)}
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return body, nil // empty, or not an object: as it is
	}
	obj := root.Content[0]
	kind, apiVersion := scalar(obj, "kind"), scalar(obj, "apiVersion")
	label := objectLabel(n, obj, kind)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return body, nil
	}
	path, ok := templatePath(gv.WithKind(kind).GroupKind())
	if !ok {
		return body, nil
	}
	tmpl := obj
	for _, p := range path {
		if tmpl = child(tmpl, p); tmpl == nil {
			return body, nil
		}
	}
	ann := child(child(tmpl, "metadata"), "annotations")
	if ann == nil || ann.Kind != yaml.MappingNode {
		return body, nil
	}
	current := map[string]string{}
	for i := 0; i+1 < len(ann.Content); i += 2 {
		current[ann.Content[i].Value] = ann.Content[i+1].Value
	}
	if opted, err := vaultk8s.OptedIn(current); err != nil || !opted || vaultk8s.Injected(current) {
		// Not vault-k8s's, or a Pod vault-k8s has injected (written out
		// from the cluster): as it is.
		return body, errorLines(label, err)
	}
	if own, both := current[spec.Prefix+"inject"]; both && own == "false" {
		return body, nil // kept with vault-k8s
	} else if both {
		return nil, []string{fmt.Sprintf("%s: %s: the Pod opts in to both injectors: remove %s, or the vault.hashicorp.com/ annotations", label, vaultk8s.InjectAnnotation, spec.Prefix+"inject")}
	}
	res, err := vaultk8s.Translate(current)
	if err != nil {
		return nil, errorLines(label, err)
	}
	want := map[string]string{}
	for k, v := range current {
		if !strings.HasPrefix(k, vaultk8s.Prefix) {
			want[k] = v
		}
	}
	added := map[string]string{}
	for k, v := range res.Annotations {
		if _, set := want[k]; !set {
			want[k], added[k] = v, v
		}
	}
	if _, err := spec.Parse(want); err != nil {
		var list spec.ErrorList
		errors.As(err, &list)
		for i, e := range list {
			if from, ok := res.From[e.Field]; ok && added[e.Field] != "" {
				list[i] = spec.Error{Field: from, Message: e.Message + " (as " + e.Field + ")"}
			}
		}
		return nil, errorLines(label, list)
	}
	out, ok := rewriteBlock(body, ann, added)
	if !ok || !sameAnnotations(out, path, want) {
		// Flow style, or text the line edit cannot keep: the document
		// is written anew from its tree.
		out = reencode(&root, ann, want)
	}
	return out, nil
}

// rewriteBlock replaces the vault-k8s entries of a block-style annotations
// mapping by the added ramvault.io/ ones, at the place of the first, and
// keeps every other line.
func rewriteBlock(body []byte, ann *yaml.Node, added map[string]string) ([]byte, bool) {
	if ann.Style&yaml.FlowStyle != 0 || len(ann.Content) == 0 {
		return nil, false
	}
	lines := bytes.SplitAfter(body, []byte("\n"))
	indent := ann.Content[0].Column - 1
	drop := make([]bool, len(lines))
	first := -1
	for i := 0; i+1 < len(ann.Content); i += 2 {
		k := ann.Content[i]
		if !strings.HasPrefix(k.Value, vaultk8s.Prefix) {
			continue
		}
		start := k.Line - 1
		if start < 0 || start >= len(lines) || k.Column-1 != indent {
			return nil, false
		}
		end := start + 1
		for end < len(lines) && (isBlank(lines[end]) || indentOf(lines[end]) > indent) {
			end++
		}
		for end > start+1 && isBlank(lines[end-1]) {
			end--
		}
		for j := start; j < end; j++ {
			drop[j] = true
		}
		if first < 0 || start < first {
			first = start
		}
	}
	entry, err := encodeEntries(added, indent)
	if err != nil || first < 0 {
		return nil, false
	}
	var out bytes.Buffer
	for i, l := range lines {
		if i == first {
			out.Write(entry)
		}
		if !drop[i] {
			out.Write(l)
		}
	}
	return out.Bytes(), true
}

// encodeEntries writes the annotations as block mapping entries, sorted,
// indented by indent spaces.
func encodeEntries(m map[string]string, indent int) ([]byte, error) {
	node := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: m[k]}
		if strings.Contains(m[k], "\n") {
			v.Style = yaml.LiteralStyle
		}
		node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(node); err != nil {
		return nil, err
	}
	pad := strings.Repeat(" ", indent)
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(b.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if !isBlank(l) {
			out.WriteString(pad)
		}
		out.Write(l)
	}
	return out.Bytes(), nil
}

// sameAnnotations checks a rewritten document: its annotations are want.
func sameAnnotations(doc []byte, path []string, want map[string]string) bool {
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return false
	}
	var cur any = m
	for _, p := range append(slices.Clone(path), "metadata", "annotations") {
		mm, _ := cur.(map[string]any)
		cur = mm[p]
	}
	got, _ := cur.(map[string]any)
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if s, ok := got[k].(string); !ok || s != v {
			return false
		}
	}
	return true
}

// reencode writes the document anew, with the annotations want.
func reencode(root *yaml.Node, ann *yaml.Node, want map[string]string) []byte {
	ann.Style = 0
	ann.Content = nil
	for _, k := range slices.Sorted(maps.Keys(want)) {
		v := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: want[k]}
		if strings.Contains(want[k], "\n") {
			v.Style = yaml.LiteralStyle
		}
		ann.Content = append(ann.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode(root)
	return b.Bytes()
}

func isBlank(l []byte) bool { return len(bytes.TrimSpace(l)) == 0 }

func indentOf(l []byte) int { return len(l) - len(bytes.TrimLeft(l, " ")) }

// child is the value of key in mapping m, or nil.
func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(m *yaml.Node, key string) string {
	if c := child(m, key); c != nil && c.Kind == yaml.ScalarNode {
		return c.Value
	}
	return ""
}

func objectLabel(n int, obj *yaml.Node, kind string) string {
	meta := child(obj, "metadata")
	if name := scalar(meta, "name"); name != "" {
		return kind + "/" + name
	}
	if g := scalar(meta, "generateName"); g != "" {
		return kind + "/" + g + "*"
	}
	return fmt.Sprintf("%s (document %d)", kind, n)
}

// errorLines are the lines reporting err about an object: one per problem.
func errorLines(label string, err error) []string {
	if err == nil {
		return nil
	}
	var list spec.ErrorList
	if !errors.As(err, &list) {
		return []string{label + ": " + err.Error()}
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = label + ": " + e.Error()
	}
	return lines
}
