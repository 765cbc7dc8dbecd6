package spec

import (
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ramvault/ramvault/pkg/didyoumean"
)

// Mode is the shape of the injection.
type Mode string

const (
	ModeNative   Mode = "native"
	ModeClassic  Mode = "classic"
	ModeInitOnly Mode = "init-only"
)

// Format is how a secret's data becomes a file.
type Format string

const (
	FormatJSON       Format = "json"
	FormatYAML       Format = "yaml"
	FormatDotenv     Format = "dotenv"
	FormatProperties Format = "properties"
	FormatRaw        Format = "raw"
	FormatTemplate   Format = "template"
)

// ReloadKind says how the app learns of new secrets.
type ReloadKind string

const (
	ReloadNone    ReloadKind = "none"
	ReloadSignal  ReloadKind = "signal"
	ReloadHTTP    ReloadKind = "http"
	ReloadRestart ReloadKind = "restart"
)

// Reload is a parsed `reload` value.
type Reload struct {
	Kind   ReloadKind
	Signal syscall.Signal // for signal
	Name   string         // signal name as written, e.g. SIGHUP
	URL    string         // for http
}

func (r Reload) String() string {
	switch r.Kind {
	case ReloadSignal:
		return "signal:" + r.Name
	case ReloadHTTP:
		return "http:" + r.URL
	case "":
		return string(ReloadNone)
	}
	return string(r.Kind)
}

var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT, "SIGWINCH": syscall.SIGWINCH,
}

// ParseReload reads `signal:<SIG>`, `http:<url>`, `restart` or `none`.
func ParseReload(v string) (Reload, error) {
	kind, arg, _ := strings.Cut(v, ":")
	switch ReloadKind(kind) {
	case ReloadNone, ReloadRestart:
		if arg != "" {
			return Reload{}, fmt.Errorf("%q takes no argument: write %q", v, kind)
		}
		return Reload{Kind: ReloadKind(kind)}, nil
	case ReloadSignal:
		name := strings.ToUpper(arg)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		sig, ok := signals[name]
		if !ok {
			return Reload{}, fmt.Errorf("%q: unknown signal; use one of SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGQUIT, SIGWINCH", v)
		}
		return Reload{Kind: ReloadSignal, Signal: sig, Name: name}, nil
	case ReloadHTTP:
		u, err := url.Parse(arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return Reload{}, fmt.Errorf("%q: want http:http://127.0.0.1:<port>/<path>", v)
		}
		if h := u.Hostname(); h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return Reload{}, fmt.Errorf("%q: the reload URL must be on localhost (the app in the same Pod), not %q", v, h)
		}
		return Reload{Kind: ReloadHTTP, URL: arg}, nil
	}
	return Reload{}, fmt.Errorf("%q: want signal:<SIG>, http:<url>, restart or none", v)
}

// Secret is one file the agent keeps in the secrets volume.
type Secret struct {
	Name     string
	Path     string
	Method   string // read or write
	Params   map[string]string
	Format   Format
	Key      string
	Template string
	Refresh  time.Duration
	Reload   *Reload // nil: the Pod's
	FileMode os.FileMode
	// File is the file's path under its mount path: Name unless
	// file-name-<name> says otherwise (it may hold directories).
	File string
	// MountPath is where the file's directory is mounted in the target
	// containers: the Pod's mount-path unless mount-path-<name> is set.
	MountPath string
	// LeftDelim, RightDelim ("" for {{ and }}) and MissingKeyZero (a missing
	// key writes "<no value>" instead of failing) are
	// the options of a template-only file's template (pkg/tmpl.Options).
	LeftDelim, RightDelim string
	MissingKeyZero        bool

	// parsed is the template Parse checked, so the agent does not parse it
	// again (ParseTemplate reuses it while the template and its options
	// are the same).
	parsed *parsedTemplate
}

// TemplateOnly says the file is a consul-template template that reads its
// own secrets (template-<name> without secret-<name>): Path is empty, and
// the template's `secret` calls are its dependencies.
func (s Secret) TemplateOnly() bool { return s.Path == "" }

// Config is a Pod's parsed, defaulted and validated ramvault annotations.
type Annotations struct {
	Inject           bool
	Status           string
	Role             string
	AuthPath         string
	AuthType         string // kubernetes or jwt
	Audience         string
	VaultAddr        string
	VaultNamespace   string
	VaultCAConfigMap string
	VaultCASecret    string
	VaultCAKey       string
	// VaultTLSServerName is checked against Vault's certificate; "" means
	// the host of the address.
	VaultTLSServerName string
	Reload             Reload
	SignalProcess      string
	Containers         []string
	Mode               Mode // "" means the cluster's default
	Placement          string
	MountPath          string
	VolumeSize         string
	RunAsUser          *int64
	RunAsGroup         *int64
	ReplaceLiveness    bool
	InjectToken        bool
	Refresh            time.Duration
	// AgentRequests and AgentLimits are the agent-requests-<resource> and
	// agent-limits-<resource> annotations, by Kubernetes resource name
	// (cpu, memory, ephemeral-storage), as written.
	AgentRequests map[string]string
	AgentLimits   map[string]string
	Secrets       []Secret // sorted by name
}

// ReloadFor is the reload that applies to a secret.
func (c *Annotations) ReloadFor(s Secret) Reload {
	if s.Reload != nil {
		return *s.Reload
	}
	return c.Reload
}

// Error is one problem with one annotation or one field of the Pod.
type Error struct {
	Field   string // the annotation at fault, or a field path such as spec.containers[1].volumeMounts
	Message string
}

func (e Error) Error() string { return e.Field + ": " + e.Message }

// ErrorList is every problem found, in annotation order.
type ErrorList []Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// indexedTable is the table as Parse looks rows up: by name for the Pod's
// annotations, in order for the per-secret families.
type indexedTable struct {
	table    []Row
	podRows  map[string]Row
	families []Row
}

// tableIndex is built once: the table is fixed, and the webhook parses the
// annotations of every Pod it is sent.
var tableIndex = sync.OnceValue(func() indexedTable {
	ix := indexedTable{table: Table(), podRows: map[string]Row{}}
	for _, r := range ix.table {
		if r.PerSecret {
			ix.families = append(ix.families, r)
		} else {
			ix.podRows[r.Name] = r
		}
	}
	return ix
})

// MaxNameLen is the longest name part of an annotation key Kubernetes
// accepts (a qualified name).
const MaxNameLen = 63

// LongNameError is the problem with an annotation key prefix+name whose
// name is longer than MaxNameLen. The apiserver refuses such a key, but only
// after the mutating webhooks: a crafted review, or a Pod the apiserver will
// refuse, is the only way here. The key is neither echoed whole nor compared
// for a did-you-mean: either costs time and memory in its length (a 1 MB
// key took a second of CPU).
func LongNameError(prefix, name string) Error {
	return Error{prefix + name[:MaxNameLen] + "…", fmt.Sprintf("the name of an annotation has at most %d characters (this one has %d)", MaxNameLen, len(name))}
}

// Parse reads every ramvault.io/ annotation, applies defaults, and validates;
// it reports every problem at once. Annotations of other prefixes are ignored.
func Parse(annotations map[string]string) (*Annotations, error) {
	ix := tableIndex()
	table, podRows, families := ix.table, ix.podRows, ix.families
	cfg := &Annotations{}
	var errs ErrorList
	// Defaults first, then the annotations.
	for _, r := range table {
		if !r.PerSecret && r.Default != "" {
			_ = r.set(cfg, nil, r.Default)
		}
	}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	secrets := map[string]*Secret{}
	perSecret := map[string]map[string]string{} // secret -> family -> value
	for _, k := range keys {
		name := strings.TrimPrefix(k, Prefix)
		if len(name) > MaxNameLen {
			errs = append(errs, LongNameError(Prefix, name))
			continue
		}
		v := strings.TrimSpace(annotations[k])
		if r, ok := podRows[name]; ok {
			if err := checkType(r, v); err != nil {
				errs = append(errs, Error{k, err.Error()})
			} else if err := r.set(cfg, nil, v); err != nil {
				errs = append(errs, Error{k, err.Error()})
			}
			continue
		}
		fam, secret := matchFamily(families, name)
		if fam == nil {
			errs = append(errs, Error{k, "unknown annotation" + suggest(name, table)})
			continue
		}
		if !isSecretName(secret) {
			errs = append(errs, Error{k, fmt.Sprintf("%q is not a valid secret name: lower-case letters, digits, '-', '.', '_', starting and ending with a letter or digit (it becomes the file name)", secret)})
			continue
		}
		if perSecret[secret] == nil {
			perSecret[secret] = map[string]string{}
		}
		if fam.Name == "template" && v != "" {
			// A template is its text as written: consul-template renders
			// its leading and trailing whitespace (the newline a YAML
			// block scalar ends with) as it renders the rest.
			v = annotations[k]
		}
		perSecret[secret][fam.Name] = v
	}
	names := make([]string, 0, len(perSecret))
	for n := range perSecret {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vals := perSecret[n]
		_, hasSecret := vals["secret"]
		_, hasTemplate := vals["template"]
		if !hasSecret {
			bad := false
			for _, f := range families {
				_, set := vals[f.Name]
				switch {
				case !set || hasTemplate && templateOnlyRow(f.Name):
				case hasTemplate:
					errs = append(errs, Error{f.Key(n), fmt.Sprintf("%q is a template-only file (no %s): %s describes a file's own secret; add that secret with its Vault path, or remove this annotation", n, Prefix+"secret-"+n, f.Name)})
					bad = true
				default:
					errs = append(errs, Error{f.Key(n), fmt.Sprintf("no secret %q: add %s with its Vault path, or remove this annotation", n, Prefix+"secret-"+n)})
					bad = true
				}
			}
			if !hasTemplate || bad {
				continue
			}
		}
		s := &Secret{Name: n, Method: "read", Format: FormatJSON, FileMode: 0o400}
		for _, f := range families {
			v, set := vals[f.Name]
			if !set {
				continue
			}
			if err := checkType(f, v); err != nil {
				errs = append(errs, Error{f.Key(n), err.Error()})
			} else if err := f.set(cfg, s, v); err != nil {
				errs = append(errs, Error{f.Key(n), err.Error()})
			}
		}
		errs = append(errs, s.finish(cfg, vals)...)
		secrets[n] = s
	}
	for _, n := range names {
		if s := secrets[n]; s != nil {
			if s.Template != "" {
				list, t := checkTemplate(*s, func(ref string) bool { return secrets[ref] != nil && secrets[ref].Path != "" })
				errs = append(errs, list...)
				if t != nil {
					s.parsed = &parsedTemplate{opts: templateOptions(*s), src: s.Template, t: t}
				}
			}
			cfg.Secrets = append(cfg.Secrets, *s)
		}
	}
	if cfg.Inject && len(cfg.Secrets) == 0 && len(errs) == 0 {
		errs = append(errs, Error{Prefix + "inject", "no secrets: add at least one " + Prefix + "secret-<name>: <vault path>"})
	}
	errs = append(errs, cfg.finish(annotations)...)
	if cfg.Reload.Kind == ReloadRestart && cfg.Mode == ModeInitOnly {
		errs = append(errs, Error{Prefix + "reload", "restart needs the agent running beside the app; mode init-only has none (use mode native or classic, or reload none)"})
	}
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

// finish applies cross-field rules of one secret.
func (s *Secret) finish(cfg *Annotations, vals map[string]string) ErrorList {
	var errs ErrorList
	key := func(f string) string { return Prefix + f + "-" + s.Name }
	if s.File == "" {
		s.File = s.Name
	}
	if s.MountPath == "" {
		s.MountPath = cfg.MountPath
	}
	_, hasSecret := vals["secret"]
	if !hasSecret {
		// The rows a template-only file may not carry are reported by
		// Parse (templateOnlyRow); its template is checked there too.
		s.Format = FormatTemplate
	} else {
		for _, f := range []string{"template-left-delim", "template-right-delim", "error-on-missing-key"} {
			if _, set := vals[f]; set {
				errs = append(errs, Error{key(f), fmt.Sprintf("applies to a template that reads its own secrets (%s without %s): remove it, or %s", key("template"), key("secret"), key("secret"))})
			}
		}
	}
	if s.Template != "" {
		if _, set := vals["format"]; set && hasSecret {
			errs = append(errs, Error{key("format"), "set either format or template, not both"})
		}
		s.Format = FormatTemplate
	}
	if s.Key != "" {
		if f, set := vals["format"]; set && f != string(FormatRaw) {
			errs = append(errs, Error{key("key"), fmt.Sprintf("key selects one value (format raw); format is %q: remove one of them", f)})
		}
		if s.Template == "" {
			s.Format = FormatRaw
		}
	}
	if s.Format == FormatRaw && s.Key == "" {
		errs = append(errs, Error{key("format"), "format raw needs " + key("key") + " naming the value to write"})
	}
	if _, set := vals["params"]; set && s.Method != "write" {
		errs = append(errs, Error{key("params"), "parameters are sent only with " + key("method") + ": write"})
	}
	if s.Refresh == 0 {
		s.Refresh = cfg.Refresh
	}
	return errs
}

func matchFamily(families []Row, name string) (*Row, string) {
	var best *Row
	for i := range families {
		p := families[i].Name + "-"
		if strings.HasPrefix(name, p) && len(name) > len(p) && (best == nil || len(p) > len(best.Name)+1) {
			best = &families[i]
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(name, best.Name+"-")
}

func checkType(r Row, v string) error {
	switch r.Type {
	case TypeBool:
		if v != "true" && v != "false" {
			return fmt.Errorf("%q is not a boolean: write \"true\" or \"false\"", v)
		}
	case TypeEnum:
		for _, e := range r.Enum {
			if v == e {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(r.Enum, ", "))
	default:
		if v == "" {
			return fmt.Errorf("empty value: set one or remove the annotation")
		}
	}
	return nil
}

// suggest offers the closest known annotation for a typo.
func suggest(name string, table []Row) string {
	best, bestD := "", max(3, len(name)/3+1) // closer than this counts as a typo
	for _, r := range table {
		cand := r.Name
		probe := name
		if r.PerSecret {
			// compare the family part only: "secrte-db" against "secret"
			if i := strings.Index(name, "-"); i > 0 {
				probe = name[:i]
				cand = r.Name
			}
		}
		if d := didyoumean.Distance(probe, cand); d < bestD {
			best, bestD = r.Name, d
			if r.PerSecret {
				if i := strings.Index(name, "-"); i > 0 {
					best = r.Name + name[i:]
				} else {
					best = r.Name + "-<name>"
				}
			}
		}
	}
	if best == "" {
		return "; see docs/annotations.md for the list"
	}
	return fmt.Sprintf("; did you mean %s%s?", Prefix, best)
}
