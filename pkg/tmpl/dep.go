package tmpl

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind says which template function asked for a Dependency.
type Kind int

const (
	// KindSecret is consul-template's `secret "<path>" ["k=v"…]`.
	KindSecret Kind = iota
	// KindPKICert is `pkiCert "<path>" ["k=v"…]`: always a write; the
	// template sees the PEM blocks of the response, not the response.
	KindPKICert
)

func (k Kind) String() string {
	if k == KindPKICert {
		return "pkiCert"
	}
	return "secret"
}

// Dependency is one Vault request a template makes. Two dependencies with the
// same Key are the same request: the caller makes it once for every template
// of the Pod, so cert, key and CA rendered from one `pki/issue` call in three
// files always match.
type Dependency struct {
	// Kind is informational: a `secret` and a `pkiCert` with the same path
	// and arguments are one request (one issuance) and Key ignores Kind.
	// When both use it, Dependencies reports KindPKICert, so the caller may
	// schedule the re-issue from the certificate's NotAfter.
	Kind Kind
	// Path is the Vault API path without /v1/ and without leading or
	// trailing '/' (consul-template trims them: `secret "/kv/app/"` is
	// `kv/app`). For KV v2 it is the path the template wrote
	// (`secret/app`); the caller rewrites it to `secret/data/app`.
	Path string
	// Version is the KV v2 version of `secret "kv/app?version=3"` (0:
	// latest). Only reads have one.
	Version int
	// Write is true when the template passed arguments: consul-template
	// writes (PUT) whenever there are arguments, even empty ones, and reads
	// (GET) otherwise. pkiCert always writes.
	Write bool
	// Data holds the k=v arguments (keys and values trimmed, the last of a
	// repeated key wins, as in consul-template).
	Data map[string]string
}

// Key is the canonical identity of the request: the same path and arguments,
// in any order and in any template, give the same Key. It holds only template
// source (path and k=v arguments), never secret data, so it may be logged.
func (d Dependency) Key() string {
	if !d.Write {
		if d.Version != 0 {
			return "read " + d.Path + "?version=" + strconv.Itoa(d.Version)
		}
		return "read " + d.Path
	}
	b, _ := json.Marshal(d.Data) // keys sorted; cannot fail for map[string]string
	if d.Data == nil {
		b = []byte("{}")
	}
	return "write " + d.Path + " " + string(b)
}

func (d Dependency) String() string { return d.Key() }

// maxPathLen bounds a dependency path; Vault's own limit on a request URL is
// far above any real mount path.
const maxPathLen = 1024

// newDependency builds the dependency of `secret`/`pkiCert` from its constant
// arguments. Its errors say what to change; they quote only template source.
func newDependency(kind Kind, args []string) (Dependency, error) {
	if len(args) == 0 {
		return Dependency{}, fmt.Errorf("%s needs a Vault path as its first argument, e.g. %s \"secret/app\"", kind, kind)
	}
	d := Dependency{Kind: kind, Write: kind == KindPKICert || len(args) > 1}
	path := strings.Trim(strings.TrimSpace(args[0]), "/")
	if q := strings.IndexByte(path, '?'); q >= 0 {
		if d.Write {
			return Dependency{}, fmt.Errorf("path %q: a query string is only for reads (`?version=N` of KV v2); a write takes k=v arguments", args[0])
		}
		v, ok := strings.CutPrefix(path[q+1:], "version=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 {
			return Dependency{}, fmt.Errorf("path %q: the only query a read takes is ?version=N with N a positive integer (KV v2)", args[0])
		}
		d.Version, path = n, path[:q]
	}
	if err := validPath(path); err != nil {
		return Dependency{}, fmt.Errorf("path %q: %s", args[0], err)
	}
	d.Path = path
	for _, a := range args[1:] {
		if a == "" {
			continue // consul-template skips empty arguments (they still make it a write)
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return Dependency{}, fmt.Errorf("argument %q is not k=v: write it as \"key=value\"", a)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" {
			return Dependency{}, fmt.Errorf("argument %q has an empty key: write it as \"key=value\"", a)
		}
		if d.Data == nil {
			d.Data = map[string]string{}
		}
		d.Data[k] = v
	}
	return d, nil
}

func validPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path: name the secret, e.g. \"secret/app\"")
	case len(p) > maxPathLen:
		return fmt.Errorf("longer than %d bytes", maxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range p {
		if !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return fmt.Errorf("has a space or non-printable character %U: Vault paths are printable, without spaces", r)
		}
		if r == '#' || r == '%' {
			return fmt.Errorf("has %q: write the path unescaped, without fragments", r)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("has an empty segment (\"//\"): remove the extra '/'")
		case ".", "..":
			return fmt.Errorf("has a %q segment: Vault paths are not relative", seg)
		}
	}
	return nil
}

// mergeDeps returns the distinct dependencies sorted by Key.
func mergeDeps(all []Dependency) []Dependency {
	by := map[string]int{}
	var out []Dependency
	for _, d := range all {
		k := d.Key()
		if i, ok := by[k]; ok {
			if d.Kind == KindPKICert {
				out[i].Kind = KindPKICert
			}
			continue
		}
		by[k] = len(out)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}
