package vaultk8s

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ramvault/ramvault/pkg/didyoumean"
	"github.com/ramvault/ramvault/pkg/spec"
)

// Result is a Pod's vault-k8s annotations as ramvault.io/ ones.
type Result struct {
	// Annotations are the ramvault.io/ annotations that do what the
	// vault-k8s ones did.
	Annotations map[string]string
	// From names, for each of them, the vault-k8s annotation it comes
	// from, so that a problem with it is reported against what the user
	// wrote.
	From map[string]string
}

// OptedIn says whether the annotations opt the Pod in to vault-k8s's
// injection (agent-inject, read by strconv.ParseBool as vault-k8s does), or
// the error of an agent-inject value vault-k8s would refuse too.
func OptedIn(annotations map[string]string) (bool, error) {
	v, ok := annotations[InjectAnnotation]
	if !ok {
		return false, nil
	}
	b, err := parseBool(v)
	if err != nil {
		return false, spec.ErrorList{{Field: InjectAnnotation, Message: fmt.Sprintf("%q is not a boolean (vault-k8s reads it with strconv.ParseBool): write \"true\" or \"false\"", v)}}
	}
	return b, nil
}

// Injected says whether vault-k8s has injected the Pod: its webhook reads
// only this value of agent-inject-status.
func Injected(annotations map[string]string) bool {
	return annotations[StatusAnnotation] == StatusInjected
}

// parseBool is vault-k8s's parseutil.ParseBool of a string: "" is false.
func parseBool(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

var index = sync.OnceValue(Table)

// translation is one Pod's annotations on their way.
type translation struct {
	in      map[string]string
	res     Result
	errs    spec.ErrorList
	secrets map[string]*secret // by raw name
	names   map[string]string  // ramvault name -> raw name
}

// secret is one of vault-k8s's secrets, by its raw name (the key's case).
type secret struct {
	raw  string
	name string // ramvault's
}

// Translate returns the ramvault.io/ annotations that do what the
// vault.hashicorp.com/ ones of a Pod do, or every annotation that cannot be
// carried over, each as a spec.Error naming it and the ramvault way.
// Annotations of other prefixes are not read. The ramvault.io/ annotations
// are not checked here: spec.Parse does that, and From names the origin of
// each.
func Translate(annotations map[string]string) (Result, error) {
	t := &translation{in: annotations, res: Result{Annotations: map[string]string{}, From: map[string]string{}},
		secrets: map[string]*secret{}, names: map[string]string{}}
	table := index()
	keys := slices.Sorted(maps.Keys(annotations))
	// The secrets first: vault-k8s's secrets() registers one for every
	// non-empty agent-inject-secret-, -template-file- or -template-.
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, Prefix)
		if !ok || strings.TrimSpace(annotations[k]) == "" || len(name) > spec.MaxNameLen {
			continue
		}
		if r, raw := matchRow(table, name); r != nil && r.Family == "name" &&
			(r.Name == "agent-inject-secret" || r.Name == "agent-inject-template" || r.Name == "agent-inject-template-file") {
			t.secret(raw)
		}
	}
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, Prefix)
		if !ok {
			continue
		}
		if len(name) > spec.MaxNameLen {
			t.errs = append(t.errs, spec.LongNameError(Prefix, name))
			continue
		}
		v := annotations[k]
		r, suffix := matchRow(table, name)
		if r == nil {
			t.deny(k, "unknown vault-k8s annotation%s: ramvault reads every vault.hashicorp.com/ annotation, and an unknown one would be ignored; remove it, or use %s", suggest(name, table), annWay)
			continue
		}
		if r.Bool {
			b, err := parseBool(v)
			if err != nil {
				t.deny(k, "%q is not a boolean (vault-k8s reads it with strconv.ParseBool): write \"true\" or \"false\"", v)
				continue
			}
			if r.DeniedWhen != "" {
				if strconv.FormatBool(b) == r.DeniedWhen {
					t.deny(k, "%s; the ramvault way: %s", strings.TrimSuffix(r.Doc, "."), r.Ramvault)
				}
				continue
			}
		}
		if r.Family == "name" && r.Name != "agent-inject-secret" && r.Name != "agent-inject-template" && r.Name != "agent-inject-template-file" {
			if _, ok := t.secrets[suffix]; !ok {
				if strings.TrimSpace(v) != "" {
					t.deny(k, "there is no secret %q (no %s or %s with a value): add one, or remove this annotation", suffix, Prefix+"agent-inject-secret-"+suffix, Prefix+"agent-inject-template-"+suffix)
				}
				continue
			}
		}
		switch {
		case r.Outcome == Denied && strings.TrimSpace(v) == "":
			// vault-k8s ignores these when empty (its Init writes some
			// of them so): so does ramvault.
		case r.Outcome == Denied:
			t.deny(k, "%s; the ramvault way: %s", strings.TrimSuffix(r.Doc, "."), r.Ramvault)
		case r.Name == "auth-config":
			t.authConfig(k, suffix, v)
		case r.apply != nil && r.Family == "":
			if strings.TrimSpace(v) != "" {
				r.apply(t, suffix, v)
			}
		}
	}
	t.pod()
	for _, raw := range slices.Sorted(maps.Keys(t.secrets)) {
		t.file(t.secrets[raw])
	}
	if len(t.errs) > 0 {
		return t.res, t.errs
	}
	return t.res, nil
}

func (t *translation) set(ramvault, v, from string) {
	k := spec.Prefix + ramvault
	t.res.Annotations[k] = v
	t.res.From[k] = from
}

func (t *translation) deny(field, format string, args ...any) {
	t.errs = append(t.errs, spec.Error{Field: field, Message: plain(fmt.Sprintf(format, args...))})
}

// plain is a table text as a message: no Markdown.
func plain(s string) string {
	s = strings.ReplaceAll(s, "[annotations.md](annotations.md)", "docs/annotations.md")
	return strings.ReplaceAll(s, "`", "")
}

// secret registers the secret of a raw name (the key's suffix).
func (t *translation) secret(raw string) {
	if _, ok := t.secrets[raw]; !ok {
		t.secrets[raw] = &secret{raw: raw}
	}
}

// value is the annotation of a secret's family, as vault-k8s's
// annotationsSecretValue reads it.
func (t *translation) value(family, raw string) (string, bool) {
	v, ok := t.in[Prefix+family+"-"+raw]
	return v, ok
}

// pod carries over the Pod-wide settings that span annotations.
func (t *translation) pod() {
	t.set("inject", "true", InjectAnnotation)
	mount := DefaultMountPath
	if v := t.in[Prefix+"secret-volume-path"]; strings.TrimSpace(v) != "" {
		mount = v
	}
	t.set("mount-path", mount, Prefix+"secret-volume-path")
	if v := t.in[Prefix+"ca-cert"]; strings.TrimSpace(v) != "" {
		t.caCert(v)
	}
}

// serviceAccountCA is where vault-k8s's agent finds the service account's
// CA, which is the kube-root-ca.crt ConfigMap of every namespace.
var serviceAccountCA = []string{"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "/run/secrets/kubernetes.io/serviceaccount/ca.crt"}

// caCert carries over ca-cert: a path in vault-k8s's agent container.
func (t *translation) caCert(v string) {
	from := Prefix + "ca-cert"
	switch tlsSecret := strings.TrimSpace(t.in[Prefix+"tls-secret"]); {
	case slices.Contains(serviceAccountCA, v):
		t.set("vault-ca-configmap", "kube-root-ca.crt", from)
	case tlsSecret != "" && strings.HasPrefix(v, "/vault/tls/") && !strings.Contains(strings.TrimPrefix(v, "/vault/tls/"), "/"):
		// vault-k8s mounts tls-secret at /vault/tls.
		t.set("vault-ca-secret", tlsSecret, Prefix+"tls-secret")
		t.set("vault-ca-key", strings.TrimPrefix(v, "/vault/tls/"), from)
	default:
		t.deny(from, "%q is a file in vault-k8s's agent container, which ramvault cannot reproduce: use %s (the service account's CA, %s, and a file of tls-secret under /vault/tls/ are carried over)", v, caWay, serviceAccountCA[0])
	}
}

// authConfig carries over auth-config-<key> (vault-k8s turns - into _).
func (t *translation) authConfig(k, key, v string) {
	switch strings.ReplaceAll(key, "-", "_") {
	case "role":
		if strings.TrimSpace(t.in[Prefix+"role"]) == "" {
			t.set("role", v, k)
		}
	case "path", "token_path", "remove_jwt_after_reading", "remove_jwt_follows_symlinks":
		// The agent presents its own projected token.
	default:
		t.deny(k, "auth parameter %q cannot be set: ramvault logs in with its own projected service-account token (audience ramvault.io/audience) and the role (ramvault.io/role); remove it", key)
	}
}

// file carries over one secret: its template, file name, mount path, mode.
func (t *translation) file(s *secret) {
	raw := s.raw
	preserve := false
	if v, ok := t.value("preserve-secret-case", raw); ok {
		preserve, _ = parseBool(v)
	} else if v, ok := t.in[Prefix+"preserve-secret-case"]; ok {
		preserve, _ = parseBool(v)
	}
	vaultName := raw // vault-k8s's secretName: the file name
	if !preserve {
		vaultName = strings.ToLower(raw)
	}
	s.name = t.ramvaultName(raw)
	origin := Prefix + "agent-inject-secret-" + raw
	tmpl, hasTmpl := t.value("agent-inject-template", raw)
	if strings.TrimSpace(tmpl) == "" {
		hasTmpl = false
	}
	if v, ok := t.value("agent-inject-template-file", raw); ok && !hasTmpl && strings.TrimSpace(v) != "" {
		return // denied with its row
	}
	if hasTmpl {
		origin = Prefix + "agent-inject-template-" + raw
	} else {
		p, _ := t.value("agent-inject-secret", raw)
		def := DefaultMapTemplate
		if strings.ToLower(t.in[Prefix+"agent-inject-default-template"]) == "json" {
			def = DefaultJSONTemplate
		} else if d := t.in[Prefix+"agent-inject-default-template"]; d != "" && strings.ToLower(d) != "map" {
			t.deny(Prefix+"agent-inject-default-template", "%q is not a default template: map or json", d)
			return
		}
		if strings.ContainsAny(p, "\"\\\n") {
			t.deny(origin, "%q is not a Vault path", p)
			return
		}
		tmpl = fmt.Sprintf(def, p)
	}
	t.set("template-"+s.name, tmpl, origin)
	file := vaultName
	if v, ok := t.value("agent-inject-file", raw); ok && strings.TrimSpace(v) != "" {
		f, ok := joinFile(v)
		if !ok {
			t.deny(Prefix+"agent-inject-file-"+raw, "%q leaves the secrets volume (a .. segment): name a file under the volume path", v)
			return
		}
		file = f
	}
	if file != s.name {
		from := Prefix + "agent-inject-file-" + raw
		if _, ok := t.value("agent-inject-file", raw); !ok {
			from = Prefix + "preserve-secret-case"
			if file == strings.ToLower(raw) {
				from = origin // a vault-k8s name that is not a ramvault one
			}
		}
		t.set("file-name-"+s.name, file, from)
	}
	for from, to := range map[string]string{"agent-template-left-delim": "template-left-delim", "agent-template-right-delim": "template-right-delim"} {
		if v, ok := t.value(from, raw); ok && v != "" {
			t.set(to+"-"+s.name, v, Prefix+from+"-"+raw)
		}
	}
	// consul-template writes "<no value>" for a missing key unless told
	// otherwise; ramvault's default is an error.
	missing := "false"
	if v, ok := t.value("error-on-missing-key", raw); ok {
		if b, _ := parseBool(v); b {
			missing = "true"
		}
	}
	t.set("error-on-missing-key-"+s.name, missing, Prefix+"error-on-missing-key-"+raw)
	if v, ok := t.value("secret-volume-path", raw); ok && strings.TrimSpace(v) != "" {
		t.set("mount-path-"+s.name, v, Prefix+"secret-volume-path-"+raw)
	}
	if v, ok := t.value("agent-inject-perms", raw); ok && strings.TrimSpace(v) != "" {
		k := Prefix + "agent-inject-perms-" + raw
		n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
		switch {
		case err != nil || n > 0o7777:
			t.deny(k, "%q is not an octal file mode", v)
		case n&0o400 == 0:
			t.deny(k, "%q does not let the owner read the file, and ramvault's files belong to the app's UID, which reads them as their owner: remove it (0400), or write 0600", v)
		case n&0o200 != 0:
			t.set("file-mode-"+s.name, "0600", k)
		default:
			t.set("file-mode-"+s.name, "0400", k)
		}
	}
}

// ramvaultName is a ramvault secret name for a vault-k8s raw name: lower
// case, characters ramvault's names do not take as '-', unique in the Pod.
func (t *translation) ramvaultName(raw string) string {
	b := []byte(strings.ToLower(raw))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b), "._-")
	if len(name) > 55 {
		name = strings.Trim(name[:55], "._-")
	}
	if name == "" {
		name = "secret"
	}
	base := name
	for i := 2; ; i++ {
		if other, taken := t.names[name]; !taken || other == raw {
			break
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	t.names[name] = raw
	return name
}

// suggest offers the closest vault-k8s annotation for a typo.
func suggest(name string, table []Row) string {
	best, bestD := "", max(3, len(name)/3+1)
	for _, r := range table {
		cand, probe := r.Name, name
		if r.Family != "" && len(name) > len(r.Name) {
			probe = name[:len(r.Name)]
		}
		if d := didyoumean.Distance(probe, cand); d < bestD {
			best, bestD = r.Name, d
			if r.Family != "" && len(name) > len(r.Name) {
				best = r.Name + name[len(r.Name):]
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s%s?)", Prefix, best)
}
