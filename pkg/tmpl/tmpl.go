package tmpl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"text/template"
	"text/template/parse"
	"time"
)

// Secret is a Vault response as a template sees it: consul-template's
// dependency.Secret, field for field, so `.Data`, `.LeaseID`, `.Warnings` …
// print the same. Data is decoded as github.com/hashicorp/vault/api decodes
// it (numbers are json.Number).
type Secret struct {
	RequestID     string
	LeaseID       string
	LeaseDuration int
	Renewable     bool
	Data          map[string]any
	Warnings      []string
	Auth          *SecretAuth
	WrapInfo      *SecretWrapInfo
}

// SecretAuth is the auth block of a response (consul-template's shape).
type SecretAuth struct {
	ClientToken   string
	Accessor      string
	Policies      []string
	Metadata      map[string]string
	LeaseDuration int
	Renewable     bool
}

// SecretWrapInfo is the wrap block of a response (consul-template's shape).
type SecretWrapInfo struct {
	Token           string
	TTL             int
	CreationTime    time.Time
	WrappedAccessor string
}

// Lookup answers a template's requests while it renders. The caller fetches
// every Dependency and Ref before rendering (so a failing one keeps the old
// files) and answers from what it fetched. Errors it returns are wrapped, not
// printed: a render error never carries them in its text.
type Lookup interface {
	// Secret is the response to d (matched by d.Key()). For KV v2 reads it
	// is the response of the rewritten path (`secret/data/app`): `.Data`
	// holds `data` and `metadata`, as in consul-template.
	Secret(d Dependency) (*Secret, error)
	// Ref is the secret the Pod defines as ramvault.io/secret-<name>, in the
	// shape of a one-secret template's dot (KV v2 already unwrapped: `.Data`
	// is the key/values).
	Ref(name string) (*Secret, error)
}

// Values is a Lookup over fetched results, keyed by Dependency.Key() and by
// ref name.
type Values struct {
	Secrets map[string]*Secret
	Refs    map[string]*Secret
}

// ErrNotFetched is returned by Values for a request it has no answer to.
var ErrNotFetched = errors.New("not fetched")

func (v Values) Secret(d Dependency) (*Secret, error) {
	if s, ok := v.Secrets[d.Key()]; ok {
		return s, nil
	}
	return nil, ErrNotFetched
}

func (v Values) Ref(name string) (*Secret, error) {
	if s, ok := v.Refs[name]; ok {
		return s, nil
	}
	return nil, ErrNotFetched
}

// Limits bound one render. Zero fields take the defaults.
type Limits struct {
	// Output is the most bytes a render may produce (default 4 MiB).
	Output int64
	// Work is the most bytes all function calls of a render may produce
	// together, counted before they allocate (default 16 × Output, at
	// least 64 MiB): it stops `replaceAll`/`join`/`printf` chains that
	// grow a value without writing it.
	Work int64
	// Steps is the most steps a render may take: each function call is one,
	// each pass through a range body or a defined template costs its number
	// of nodes (default 1,000,000: about a second of work at the ~1µs a
	// step costs measured on a loaded 2-core machine).
	Steps int64
	// Time is the wall-clock budget of a render (default 2s), checked at
	// every step.
	Time time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.Output <= 0 {
		l.Output = 4 << 20
	}
	if l.Work <= 0 {
		l.Work = max(16*l.Output, 64<<20)
	}
	if l.Steps <= 0 {
		l.Steps = 1_000_000
	}
	if l.Time <= 0 {
		l.Time = 2 * time.Second
	}
	return l
}

// Options configure Parse.
type Options struct {
	// LeftDelim and RightDelim default to "{{" and "}}" (Vault Agent's
	// left_delimiter/right_delimiter).
	LeftDelim, RightDelim string
	// ErrorOnMissingKey makes `.Data.nokey` an error instead of the zero
	// value: Vault Agent's error_on_missing_key and vault-k8s's
	// vault.hashicorp.com/error-on-missing-key. Default false, as there
	// (missingkey=zero: a missing key prints "<no value>").
	ErrorOnMissingKey bool
	// Limits bound each render; Parse already refuses a constant range or
	// loop larger than Limits.Steps.
	Limits Limits
}

// Template is a parsed, checked template. It is safe for concurrent use.
type Template struct {
	name string
	src  string
	opts Options
	tmpl *template.Template
	deps []Dependency
	refs []string
	// ticks[i] is where the i-th inserted step counter sits (a range or
	// define), for the error that reports the step limit.
	ticks []tickSite
	// usesDot is true when the template reads `.` outside `with`/`range`.
	usesDot bool
}

// Parse parses and checks a template. All problems are returned at once as
// an ErrorList, each naming the template, line and column and what to change:
// syntax, unknown or refused functions (with the closest known name),
// `secret`/`pkiCert`/`ref` arguments that are not string constants, invalid
// Vault paths and k=v arguments, recursive templates and constant ranges above
// the step limit.
func Parse(name, text string, opts Options) (*Template, error) {
	if opts.LeftDelim == "" {
		opts.LeftDelim = "{{"
	}
	if opts.RightDelim == "" {
		opts.RightDelim = "}}"
	}
	opts.Limits = opts.Limits.withDefaults()
	trees, err := parseTrees(name, text, opts.LeftDelim, opts.RightDelim)
	if err != nil {
		return nil, err
	}
	t := &Template{name: name, src: text, opts: opts}
	c := &checker{t: t, trees: trees}
	if errs := c.check(); len(errs) > 0 {
		return nil, errs
	}
	c.instrument()
	root := template.New(name).Delims(opts.LeftDelim, opts.RightDelim)
	if opts.ErrorOnMissingKey {
		root.Option("missingkey=error")
	} else {
		root.Option("missingkey=zero")
	}
	root.Funcs(placeholderFuncs())
	for _, n := range sortedNames(trees) {
		if _, err := root.AddParseTree(n, trees[n]); err != nil {
			return nil, ErrorList{{Template: name, Msg: err.Error()}}
		}
	}
	t.tmpl = root
	return t, nil
}

// WithLimits is the template under other render limits, without parsing it
// again (a parsed template is read-only; Execute clones it). ok is false
// when the step limit differs: Parse checked constant ranges against it.
func (t *Template) WithLimits(l Limits) (_ *Template, ok bool) {
	l = l.withDefaults()
	if l.Steps != t.opts.Limits.Steps {
		return nil, false
	}
	c := *t
	c.opts.Limits = l
	return &c, true
}

// Name is the name given to Parse.
func (t *Template) Name() string { return t.name }

// Dependencies are the distinct Vault requests of the template, sorted by Key.
func (t *Template) Dependencies() []Dependency { return append([]Dependency(nil), t.deps...) }

// Refs are the distinct names the template passes to `ref`, sorted.
func (t *Template) Refs() []string { return append([]string(nil), t.refs...) }

// UsesDot reports whether the template reads `.` at its top level (a
// one-secret template: `{{ .Data.password }}`); the injector can then
// require the file to have a secret of its own.
func (t *Template) UsesDot() bool { return t.usesDot }

// Input is what one render sees.
type Input struct {
	// Dot is `.` at the top of the template: the file's own secret in the
	// one-secret shape (KV v2 unwrapped), so `{{ .Data.password }}` stays as
	// short as today. Nil for vault-k8s templates (consul-template renders
	// with a nil dot).
	Dot *Secret
	// Lookup answers secret, pkiCert and ref.
	Lookup Lookup
	// Now is the clock of `timestamp` (default time.Now).
	Now func() time.Time
}

// Execute renders the template. Its error is an *Error that names the
// template, the position and the expression, never a secret value; errors.Is
// matches ErrLimit for any limit and ErrOutputLimit, ErrWorkLimit,
// ErrStepLimit, ErrTimeLimit for each.
func (t *Template) Execute(in Input) ([]byte, error) {
	if in.Lookup == nil {
		in.Lookup = Values{}
	}
	if in.Now == nil {
		in.Now = time.Now
	}
	r := newRun(t, in)
	tm, err := t.tmpl.Clone()
	if err != nil {
		return nil, &Error{Template: t.name, Msg: "clone: " + err.Error()}
	}
	tm.Funcs(r.funcs())
	var buf bytes.Buffer
	w := &limitWriter{w: &buf, left: t.opts.Limits.Output}
	var dot any
	if in.Dot != nil {
		dot = in.Dot
	}
	if err := safeExecute(tm, w, dot); err != nil {
		return nil, r.sanitize(err, w)
	}
	return buf.Bytes(), nil
}

func safeExecute(tm *template.Template, w io.Writer, dot any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errPanic
		}
	}()
	return tm.Execute(w, dot)
}

var errPanic = errors.New("internal error while rendering")

// Check parses the template like Parse and returns only the error: what the
// injector calls at admission.
func Check(name, text string, opts Options) error {
	_, err := Parse(name, text, opts)
	return err
}

// parseTrees parses with the function check off: the checker reports every
// unknown function at once, with a did-you-mean, instead of the first one.
func parseTrees(name, text, l, r string) (map[string]*parse.Tree, error) {
	treeSet := map[string]*parse.Tree{}
	tr := parse.New(name)
	tr.Mode = parse.SkipFuncCheck
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%v", p)
			}
		}()
		_, err = tr.Parse(text, l, r, treeSet)
	}()
	if err != nil {
		return nil, ErrorList{syntaxError(name, err)}
	}
	if _, ok := treeSet[name]; !ok {
		treeSet[name] = tr
	}
	return treeSet, nil
}
