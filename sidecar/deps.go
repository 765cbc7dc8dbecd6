package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpl"
	"github.com/ramvault/ramvault/sidecar/render"
	"github.com/ramvault/ramvault/sidecar/vault"
)

// dep is one Vault request of the Pod: a file's own secret
// (ramvault.io/secret-<name>) or a template's secret/pkiCert call. The same
// path and arguments anywhere in the Pod are one dep: one request, one
// lease, one schedule, so cert, key and CA in three files come from one
// issuance.
type dep struct {
	// name keys the dep's lease in the state, its metrics and its log
	// lines: the name of the file whose own secret it is, else
	// "<file>#<n>" (the first file using it, its n-th dependency).
	name    string
	key     string // tmpl.Dependency.Key(): path and arguments, never data
	kind    string // "secret" or "pkiCert", for the status file
	method  string // read or write
	path    string // as written; the client rewrites KV v2 reads
	params  map[string]string
	version int           // KV v2 version of a read (0: latest)
	refresh time.Duration // re-read interval without a lease: the shortest of its files'
	files   []*file       // every file that uses it, sorted by name
}

// request is the path Get is asked for (a versioned read carries ?version=N).
func (d *dep) request() string {
	if d.version > 0 {
		return d.path + "?version=" + strconv.Itoa(d.version)
	}
	return d.path
}

// file is one file of the secrets volume and what it renders from.
type file struct {
	secret spec.Secret
	path   string // where it is written, relative to the secrets directory (Annotations.VolumePath)
	render *render.Renderer
	own    *dep            // the file's own secret; nil for a template-only file
	byKey  map[string]*dep // the template's dependencies, by tmpl Dependency.Key()
	refs   map[string]*dep // the template's refs, by name
	deps   []*dep          // every dep the file needs, distinct
}

// graph is the Pod's files and their distinct dependencies.
type graph struct {
	files []*file // sorted by name
	deps  []*dep  // distinct, in order of first use
}

// ownDependency is a one-secret file's request in tmpl's terms, so it has the
// Key a template's `secret` of the same path and arguments has.
func ownDependency(s spec.Secret) tmpl.Dependency {
	d := tmpl.Dependency{Kind: tmpl.KindSecret, Path: s.Path, Write: s.Method == "write"}
	if len(s.Params) > 0 {
		d.Data = s.Params
	}
	return d
}

// buildGraph parses every file's template and collects the distinct
// dependencies of the Pod.
func buildGraph(secrets []spec.Secret, l render.Limits) (*graph, error) {
	g := &graph{}
	byKey := map[string]*dep{}
	use := func(f *file, td tmpl.Dependency, name string) *dep {
		k := td.Key()
		d, ok := byKey[k]
		if !ok {
			d = &dep{name: name, key: k, kind: td.Kind.String(), method: "read", path: td.Path, params: td.Data, version: td.Version}
			if td.Write {
				d.method = "write"
			}
			byKey[k] = d
			g.deps = append(g.deps, d)
		}
		if td.Kind == tmpl.KindPKICert {
			d.kind = td.Kind.String()
		}
		if !slices.Contains(f.deps, d) {
			f.deps = append(f.deps, d)
		}
		return d
	}
	// Own secrets first: a dep that is some file's own secret is named
	// after that file.
	for _, s := range secrets {
		r, err := render.New(s, l)
		if err != nil {
			return nil, err
		}
		f := &file{secret: s, render: r, byKey: map[string]*dep{}, refs: map[string]*dep{}}
		if s.Path != "" {
			f.own = use(f, ownDependency(s), s.Name)
		}
		g.files = append(g.files, f)
	}
	owner := map[string]*file{}
	for _, f := range g.files {
		if f.own != nil {
			owner[f.secret.Name] = f
		}
	}
	for _, f := range g.files {
		t := f.render.Template()
		if t == nil {
			continue
		}
		for i, td := range t.Dependencies() {
			f.byKey[td.Key()] = use(f, td, fmt.Sprintf("%s#%d", f.secret.Name, i+1))
		}
		for _, r := range t.Refs() {
			o := owner[r]
			if o == nil {
				// spec.Parse refuses this; a hand-written --annotations
				// file goes through it too.
				return nil, fmt.Errorf("%s: ref %q: no %s in the Pod", spec.TemplateName(f.secret.Name), r, spec.Prefix+"secret-"+r)
			}
			f.refs[r] = o.own
			if !slices.Contains(f.deps, o.own) {
				f.deps = append(f.deps, o.own)
			}
		}
	}
	for _, f := range g.files {
		for _, d := range f.deps {
			d.files = append(d.files, f)
			if d.refresh == 0 || f.secret.Refresh < d.refresh {
				d.refresh = f.secret.Refresh
			}
		}
	}
	return g, nil
}

// kvAliasCandidates are pairs of reads that may be one request on a KV v2
// mount: `secret/app` and `secret/data/app`. Only the mount lookup can tell,
// so only these are looked up before the first fetch (every other read
// still asks for the mount and the path at once).
func (g *graph) kvAliasCandidates() [][2]*dep {
	var out [][2]*dep
	for _, a := range g.deps {
		for _, b := range g.deps {
			if a == b || a.method != "read" || b.method != "read" || a.version != b.version {
				continue
			}
			// b has a data/ segment that a lacks.
			for i := 0; ; {
				j := strings.Index(b.path[i:], "/data/")
				if j < 0 {
					break
				}
				j += i
				if b.path[:j+1]+b.path[j+6:] == a.path {
					out = append(out, [2]*dep{a, b})
					break
				}
				i = j + 1
			}
		}
	}
	return out
}

// merge makes b one dep with a: a request both reach (KV v2 `secret/app`
// and `secret/data/app`). b's files use a instead; b is dropped.
func (g *graph) merge(a, b *dep) {
	for _, f := range b.files {
		for k, d := range f.byKey {
			if d == b {
				f.byKey[k] = a
			}
		}
		for k, d := range f.refs {
			if d == b {
				f.refs[k] = a
			}
		}
		if f.own == b {
			f.own = a
		}
		f.deps = slices.DeleteFunc(f.deps, func(d *dep) bool { return d == b })
		if !slices.Contains(f.deps, a) {
			f.deps = append(f.deps, a)
		}
		if !slices.Contains(a.files, f) {
			a.files = append(a.files, f)
		}
	}
	slices.SortFunc(a.files, func(x, y *file) int { return strings.Compare(x.secret.Name, y.secret.Name) })
	a.refresh = min(a.refresh, b.refresh)
	// A dep that is a file's own secret keeps its name.
	if strings.Contains(a.name, "#") && !strings.Contains(b.name, "#") {
		a.name = b.name
	}
	g.deps = slices.DeleteFunc(g.deps, func(d *dep) bool { return d == b })
}

// mergeKVAliases looks up the mounts of the reads that may be one KV v2
// request and merges those that are.
func (a *agent) mergeKVAliases(ctx context.Context) error {
	for _, p := range a.graph.kvAliasCandidates() {
		if !slices.Contains(a.graph.deps, p[0]) || !slices.Contains(a.graph.deps, p[1]) {
			continue
		}
		var paths [2]string
		for i, d := range p {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
			rp, err := a.vault.ReadPath(cctx, d.path)
			cancel()
			if err != nil {
				return fmt.Errorf("look up the mount of %s: %w", d.path, err)
			}
			paths[i] = rp
		}
		if paths[0] == paths[1] {
			a.log.Info("two reads are one KV v2 request", "dependency", p[0].name, "path", p[0].path, "same_as", p[1].path)
			a.graph.merge(p[0], p[1])
		}
	}
	return nil
}

// digest identifies a response without holding it: a new KV version or a
// new lease changes it.
func digest(s *vault.Secret) string {
	b, _ := json.Marshal(struct {
		Data  map[string]any
		Lease string
	}{s.Raw, s.LeaseID})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// lookup answers one file's template from the values of a change.
type lookup struct {
	f    *file
	vals map[*dep]*vault.Secret
}

func (l lookup) Secret(td tmpl.Dependency) (*tmpl.Secret, error) {
	v := l.vals[l.f.byKey[td.Key()]]
	if v == nil {
		return nil, tmpl.ErrNotFetched
	}
	// consul-template's shape: the response's data as sent (KV v2:
	// .Data.data, .Data.metadata).
	return &tmpl.Secret{Data: v.Raw, LeaseID: v.LeaseID, LeaseDuration: int(v.LeaseDuration.Seconds()), Renewable: v.Renewable, Warnings: v.Warnings}, nil
}

func (l lookup) Ref(name string) (*tmpl.Secret, error) {
	v := l.vals[l.f.refs[name]]
	if v == nil {
		return nil, tmpl.ErrNotFetched
	}
	// The one-secret shape: KV v2 unwrapped.
	return &tmpl.Secret{Data: v.Data, LeaseID: v.LeaseID, LeaseDuration: int(v.LeaseDuration.Seconds()), Renewable: v.Renewable, Warnings: v.Warnings}, nil
}

// renderFile renders f from vals (every dep of f has a value there).
func renderFile(f *file, vals map[*dep]*vault.Secret) ([]byte, error) {
	in := render.Input{Lookup: lookup{f: f, vals: vals}}
	if f.own != nil {
		v := vals[f.own]
		in.Data, in.LeaseID, in.LeaseDuration, in.Renewable = v.Data, v.LeaseID, v.LeaseDuration, v.Renewable
		if in.Data == nil {
			in.Data = map[string]any{}
		}
	}
	return f.render.Render(in)
}
