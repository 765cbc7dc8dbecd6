package spec

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Prefix is the annotation prefix every ramvault annotation carries.
const Prefix = "ramvault.io/"

// Type names the value type of an annotation, for parsing and the docs.
type Type string

const (
	TypeBool     Type = "bool"
	TypeString   Type = "string"
	TypeDuration Type = "duration"
	TypeEnum     Type = "enum"
	TypeList     Type = "list"
	TypeURL      Type = "url"
	TypeSize     Type = "size"
	TypeInt      Type = "integer"
	TypeFileMode Type = "file mode"
	TypeTemplate Type = "template"
	TypeReload   Type = "reload"
	TypeParams   Type = "parameters"
	TypePath     Type = "vault path"
	TypeQuantity Type = "quantity"
)

// Row is one annotation. A row with PerSecret set is a family:
// `ramvault.io/<Name>-<secret>`, one per secret file.
type Row struct {
	Name      string
	PerSecret bool
	Type      Type
	Enum      []string // allowed values when Type is TypeEnum
	Default   string   // as written in an annotation; "" means none
	Example   string
	Doc       string
	// set parses raw (already validated against Type) into the target.
	set func(c *Annotations, s *Secret, raw string) error
}

// Key is the annotation key of the row (for a secret family, of secret name).
func (r Row) Key(secret string) string {
	if r.PerSecret {
		return Prefix + r.Name + "-" + secret
	}
	return Prefix + r.Name
}

// Name checks, written out rather than as regexps: the agent starts in
// every Pod, and compiling five regexps at package init cost it ~2.5 ms of
// each start. spec_test.go holds each one to the regexp it replaces:
//
//	isRole        ^[A-Za-z0-9_.-]{1,128}$
//	isSecretName  ^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$
//	isProcName    ^[^/\x00]{1,15}$
//	isMountPath   ^/[A-Za-z0-9._/-]*$
//	isVaultPath   ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.+@=:-]+)*$

func isRole(s string) bool {
	return len(s) >= 1 && len(s) <= 128 && all(s, isWordChar)
}

func isSecretName(s string) bool {
	if len(s) < 1 || len(s) > 63 || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	return all(s, func(c byte) bool { return isLowerAlnum(c) || c == '.' || c == '_' || c == '-' })
}

// isProcName counts characters as the regexp did: a rune, or one byte of
// invalid UTF-8.
func isProcName(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= 1 && n <= 15 && !strings.ContainsAny(s, "/\x00")
}

func isMountPath(s string) bool {
	return strings.HasPrefix(s, "/") && all(s, func(c byte) bool { return isWordChar(c) || c == '/' })
}

func isVaultPath(s string) bool {
	first, rest, more := strings.Cut(s, "/")
	if first == "" || !all(first, isWordChar) {
		return false
	}
	for more {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if seg == "" || !all(seg, func(c byte) bool { return isWordChar(c) || strings.IndexByte("+@=:", c) >= 0 }) {
			return false
		}
	}
	return true
}

// isDNSSubdomain is a Kubernetes object name: [a-z0-9.-], at most 253,
// starting and ending with [a-z0-9].
func isDNSSubdomain(s string) bool {
	if len(s) < 1 || len(s) > 253 || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	return all(s, func(c byte) bool { return isLowerAlnum(c) || c == '.' || c == '-' })
}

// isWordChar is [A-Za-z0-9_.-].
func isWordChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// Table returns every annotation, in documentation order. Per-secret rows
// follow the pod-wide ones.
func Table() []Row {
	return []Row{
		{Name: "inject", Type: TypeBool, Example: `"true"`,
			Doc: `Opt in: "true" injects the agent; "false", or no annotation, leaves the Pod alone. Any other value is an error (the Pod is denied), so a typo never starts a Pod without its secrets.`,
			set: func(c *Annotations, _ *Secret, v string) error { c.Inject = v == "true"; return nil }},
		{Name: "status", Type: TypeString,
			Doc: "Written by the injector when it has injected the Pod (its version). A Pod that carries it is never injected again. Do not set it yourself.",
			set: func(c *Annotations, _ *Secret, v string) error { c.Status = v; return nil }},
		{Name: "role", Type: TypeString, Example: "payments",
			Doc: "Vault Kubernetes-auth role to log in with. Default: the Pod's service account name (so a role per service account needs no annotation).",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isRole(v) {
					return fmt.Errorf("%q is not a Vault role name: use letters, digits, '_', '.', '-' (at most 128)", v)
				}
				c.Role = v
				return nil
			}},
		{Name: "auth-path", Type: TypeString, Default: "kubernetes", Example: "kubernetes-prod",
			Doc: "Mount path of the Kubernetes auth method in Vault (without auth/).",
			set: func(c *Annotations, _ *Secret, v string) error {
				v = strings.Trim(strings.TrimPrefix(v, "auth/"), "/")
				if !isVaultPath(v) {
					return fmt.Errorf("%q is not a Vault mount path", v)
				}
				c.AuthPath = v
				return nil
			}},
		{Name: "auth-type", Type: TypeEnum, Enum: []string{"kubernetes", "jwt"}, Default: "kubernetes",
			Doc: "Vault auth method the agent logs in with, at `auth-path`: `kubernetes` (Vault asks the apiserver for a TokenReview) or `jwt` " +
				"(Vault checks the projected token against the cluster's service-account issuer keys, for a Vault that cannot reach the apiserver). The agent's login is the same call for both (role and token at `auth/<auth-path>/login`): name the jwt mount in `auth-path`.",
			set: func(c *Annotations, _ *Secret, v string) error { c.AuthType = v; return nil }},
		{Name: "audience", Type: TypeString, Default: "vault",
			Doc: "Audience of the projected service-account token the agent logs in with; must match the Vault role's `audience`.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if v == "" || strings.ContainsAny(v, " ,") {
					return fmt.Errorf("%q is not a token audience: one word, no spaces or commas", v)
				}
				c.Audience = v
				return nil
			}},
		{Name: "vault-addr", Type: TypeURL, Example: "https://vault.vault.svc:8200",
			Doc: "Vault address for this Pod. Default: the cluster default of the injector. Accepted only if the injector's allowlist holds it.",
			set: func(c *Annotations, _ *Secret, v string) error {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
					return fmt.Errorf("%q is not a Vault address: want http(s)://host[:port]", v)
				}
				c.VaultAddr = strings.TrimSuffix(v, "/")
				return nil
			}},
		{Name: "vault-namespace", Type: TypeString, Example: "team-a",
			Doc: "Vault Enterprise namespace to work in. Default: none (root).",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isVaultPath(strings.Trim(v, "/")) {
					return fmt.Errorf("%q is not a Vault namespace path", v)
				}
				c.VaultNamespace = strings.Trim(v, "/")
				return nil
			}},
		{Name: "vault-ca-configmap", Type: TypeString, Example: "vault-ca",
			Doc: "ConfigMap in the Pod's namespace whose key `ca.crt` holds the PEM CA bundle that signs Vault's certificate " +
				"(distributed to namespaces by trust-manager, say); mounted read-only into the agent containers only. " +
				"Default: the injector's `--vault-ca-configmap`; if neither is set, the agent trusts the public CA bundle in its image.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isDNSSubdomain(v) {
					return fmt.Errorf("%q is not a ConfigMap name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", v)
				}
				c.VaultCAConfigMap = v
				return nil
			}},
		{Name: "vault-ca-secret", Type: TypeString, Example: "vault-tls",
			Doc: "Secret in the Pod's namespace holding the PEM CA bundle of Vault's certificate at key `vault-ca-key`, for a CA kept in a Secret " +
				"(as vault-k8s's `tls-secret` is); mounted read-only into the agent containers only. Set this or `vault-ca-configmap`, not both.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isDNSSubdomain(v) {
					return fmt.Errorf("%q is not a Secret name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", v)
				}
				c.VaultCASecret = v
				return nil
			}},
		{Name: "vault-ca-key", Type: TypeString, Default: "ca.crt",
			Doc: "Key of the CA bundle in `vault-ca-configmap` or `vault-ca-secret`.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isConfigKey(v) {
					return fmt.Errorf("%q is not a ConfigMap or Secret key: letters, digits, '-', '_' and '.' (at most 253)", v)
				}
				c.VaultCAKey = v
				return nil
			}},
		{Name: "vault-tls-server-name", Type: TypeString, Example: "vault.example.com",
			Doc: "Name Vault's certificate is checked against, when it is not the host of the Vault address (an address by IP, say).",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isHostName(v) {
					return fmt.Errorf("%q is not a DNS name", v)
				}
				c.VaultTLSServerName = v
				return nil
			}},
		{Name: "reload", Type: TypeReload, Default: "none", Example: "signal:SIGHUP",
			Doc: "How the app learns of new secrets: `signal:<SIG>` (signal the app process in a shared process namespace), " +
				"`http:<url>` (POST to a localhost URL), `restart` (the agent fails the app's liveness probe so the kubelet restarts the app container), or `none`.",
			set: func(c *Annotations, _ *Secret, v string) error {
				r, err := ParseReload(v)
				c.Reload = r
				return err
			}},
		{Name: "signal-process", Type: TypeString, Example: "nginx",
			Doc: "Name of the app process to signal (as in /proc/<pid>/comm, at most 15 characters). Default: the base name of the first target container's command.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isProcName(v) {
					return fmt.Errorf("%q is not a process name: 1 to 15 characters, no '/'", v)
				}
				c.SignalProcess = v
				return nil
			}},
		{Name: "containers", Type: TypeList, Example: "app,worker",
			Doc: "Comma-separated containers that get the secrets volume (read-only): app containers, or init containers " +
				"(a migration, say), which then run after the agent's first write (with `agent-placement` first). Default: every app container.",
			set: func(c *Annotations, _ *Secret, v string) error {
				c.Containers = nil
				for _, n := range strings.Split(v, ",") {
					if n = strings.TrimSpace(n); n != "" {
						c.Containers = append(c.Containers, n)
					}
				}
				if len(c.Containers) == 0 {
					return fmt.Errorf("empty list: name at least one container, or remove the annotation")
				}
				return nil
			}},
		{Name: "mode", Type: TypeEnum, Enum: []string{"native", "classic", "init-only"}, Example: "init-only",
			Doc: "Shape of the injection. `native`: one init container with restartPolicy Always (a native sidecar, Kubernetes ≥ 1.29) whose postStart hook holds the app until the secrets exist. " +
				"`classic`: an init container then a regular sidecar. `init-only`: the init container only (no renewal; leases expire). Default: native where the cluster supports it, else classic.",
			set: func(c *Annotations, _ *Secret, v string) error { c.Mode = Mode(v); return nil }},
		{Name: "agent-placement", Type: TypeEnum, Enum: []string{"first", "last"}, Default: "first",
			Doc: "Where the agent goes among existing init containers. `first` (default) because service-mesh init containers such as istio-init redirect all traffic to a proxy that is not running yet, which would cut the agent off from Vault.",
			set: func(c *Annotations, _ *Secret, v string) error { c.Placement = v; return nil }},
		{Name: "mount-path", Type: TypeString, Default: "/var/run/secrets/ramvault",
			Doc: "Where the secrets volume is mounted (read-only) in the app containers.",
			set: func(c *Annotations, _ *Secret, v string) error {
				if !isMountPath(v) || strings.Contains(v, "..") || v == "/" {
					return fmt.Errorf("%q is not an absolute path for a volume mount", v)
				}
				c.MountPath = strings.TrimSuffix(v, "/")
				return nil
			}},
		{Name: "volume-size", Type: TypeSize, Default: "4Mi",
			Doc: "sizeLimit of the in-memory secrets volume (Ki, Mi or Gi; at most 64Mi).",
			set: func(c *Annotations, _ *Secret, v string) error {
				n, err := ParseSize(v)
				if err == nil && (n < 64*1024 || n > 64<<20) {
					err = fmt.Errorf("%q is out of range: between 64Ki and 64Mi", v)
				}
				c.VolumeSize = v
				return err
			}},
		{Name: "run-as-user", Type: TypeInt, Example: "1000",
			Doc: "UID the secret files belong to (the agent runs as it). Default: the target containers' runAsUser (container or Pod level), which must then be the same for all of them.",
			set: func(c *Annotations, _ *Secret, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 || n > 2147483647 {
					return fmt.Errorf("%q is not a non-root UID: a whole number from 1", v)
				}
				c.RunAsUser = &n
				return nil
			}},
		{Name: "run-as-group", Type: TypeInt, Example: "1000",
			Doc: "GID the agent runs as. Default: the target containers' common runAsGroup, if they have one. The files are 0400 or 0600, so the group reads nothing.",
			set: func(c *Annotations, _ *Secret, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 || n > 2147483647 {
					return fmt.Errorf("%q is not a GID: a whole number from 0", v)
				}
				c.RunAsGroup = &n
				return nil
			}},
		{Name: "inject-token", Type: TypeBool, Default: "false",
			Doc: "Also write the agent's Vault token to the file `token` beside the secrets (0400, the app's), for an app that calls Vault itself. " +
				"The token is the agent's: revoked when the Pod ends.",
			set: func(c *Annotations, _ *Secret, v string) error { c.InjectToken = v == "true"; return nil }},
		resourceRow("requests", "cpu", "25m"), resourceRow("requests", "memory", "24Mi"), resourceRow("requests", "ephemeral-storage", "1Mi"),
		resourceRow("limits", "cpu", "1"), resourceRow("limits", "memory", "64Mi"), resourceRow("limits", "ephemeral-storage", "8Mi"),
		{Name: "replace-liveness", Type: TypeBool, Default: "false",
			Doc: "With reload `restart`: replace an existing liveness probe of the target containers (otherwise such a Pod is denied).",
			set: func(c *Annotations, _ *Secret, v string) error { c.ReplaceLiveness = v == "true"; return nil }},
		{Name: "refresh", Type: TypeDuration, Default: "5m",
			Doc: "Default re-read interval for secrets without a lease (KV). At least 1s.",
			set: func(c *Annotations, _ *Secret, v string) error {
				d, err := parseRefresh(v)
				c.Refresh = d
				return err
			}},

		{Name: "secret", PerSecret: true, Type: TypePath, Example: "secret/data/payments/db",
			Doc: "Defines secret `<name>`: the Vault path to read (KV v1/v2 detected from the mount; `database/creds/<role>` and other leased secrets are renewed and re-issued). The file is named `<name>` (or `file-name-<name>`).",
			set: func(_ *Annotations, s *Secret, v string) error {
				v = strings.Trim(v, "/")
				if !isVaultPath(v) {
					return fmt.Errorf("%q is not a Vault path", v)
				}
				s.Path = v
				return nil
			}},
		{Name: "method", PerSecret: true, Type: TypeEnum, Enum: []string{"read", "write"}, Default: "read",
			Doc: "`write` sends `params-<name>` to the path and uses the response (PKI `pki/issue/<role>`, transit, any generate-on-write endpoint); the result is re-issued before it expires.",
			set: func(_ *Annotations, s *Secret, v string) error { s.Method = v; return nil }},
		{Name: "params", PerSecret: true, Type: TypeParams, Example: "common_name=app.example.com,ttl=24h",
			Doc: "Parameters for `method: write`, as comma-separated key=value pairs.",
			set: func(_ *Annotations, s *Secret, v string) error {
				p, err := ParseParams(v)
				s.Params = p
				return err
			}},
		{Name: "format", PerSecret: true, Type: TypeEnum, Enum: []string{"json", "yaml", "dotenv", "properties", "raw"}, Default: "json",
			Doc: "How the secret's data becomes the file. `raw` writes the single value of `key-<name>`.",
			set: func(_ *Annotations, s *Secret, v string) error { s.Format = Format(v); return nil }},
		{Name: "key", PerSecret: true, Type: TypeString, Example: "password",
			Doc: "The data key written by format `raw` (implies it).",
			set: func(_ *Annotations, s *Secret, v string) error {
				if v == "" {
					return fmt.Errorf("empty key")
				}
				s.Key = v
				return nil
			}},
		{Name: "template", PerSecret: true, Type: TypeTemplate, Example: `postgres://{{ .Data.username }}:{{ .Data.password }}@db:5432/app`,
			Doc: "A template rendering the file (overrides format): Go text/template with consul-template's functions (docs/templates.md). " +
				"With `secret-<name>`, dot is that secret: `.Data` (KV v2 unwrapped), `.LeaseID`, `.LeaseDuration`, `.Renewable`. " +
				"Without it the file is template-only and dot is empty. Either way the template may read any Vault secret with " +
				"`secret \"<path>\"` (a read; KV v2 as consul-template: `.Data.data`) or `secret \"<path>\" \"k=v\"…` and `pkiCert` (a write), " +
				"and use another secret of the Pod with `ref \"<other>\"`. The same path and arguments anywhere in the Pod are one Vault request " +
				"(one lease, one issuance). A missing key is an error (a template-only file may say otherwise with `error-on-missing-key-<name>`). Parsed and checked at admission.",
			set: func(_ *Annotations, s *Secret, v string) error { s.Template = v; return nil }},
		{Name: "refresh", PerSecret: true, Type: TypeDuration, Example: "30s",
			Doc: "Re-read interval of this secret when it has no lease. Default: `refresh`.",
			set: func(_ *Annotations, s *Secret, v string) error {
				d, err := parseRefresh(v)
				s.Refresh = d
				return err
			}},
		{Name: "reload", PerSecret: true, Type: TypeReload, Example: "http:http://127.0.0.1:8080/-/reload",
			Doc: "Reload for this secret only, overriding `reload`.",
			set: func(_ *Annotations, s *Secret, v string) error {
				r, err := ParseReload(v)
				s.Reload = &r
				return err
			}},
		{Name: "file-mode", PerSecret: true, Type: TypeFileMode, Default: "0400",
			Doc: "Mode of the file: owner-only (0400 or 0600).",
			set: func(_ *Annotations, s *Secret, v string) error {
				n, err := strconv.ParseUint(v, 8, 32)
				if err != nil || (n != 0o400 && n != 0o600) {
					return fmt.Errorf("%q: use 0400 or 0600 (files are never readable by other users)", v)
				}
				s.FileMode = os.FileMode(n)
				return nil
			}},
		{Name: "template-left-delim", PerSecret: true, Type: TypeString, Example: "[[",
			Doc: "Left delimiter of a template-only file's template, instead of `{{` (Vault Agent's `left_delimiter`).",
			set: func(_ *Annotations, s *Secret, v string) error { s.LeftDelim = v; return nil }},
		{Name: "template-right-delim", PerSecret: true, Type: TypeString, Example: "]]",
			Doc: "Right delimiter of a template-only file's template, instead of `}}`.",
			set: func(_ *Annotations, s *Secret, v string) error { s.RightDelim = v; return nil }},
		{Name: "error-on-missing-key", PerSecret: true, Type: TypeBool, Default: "true",
			Doc: "Whether a template-only file's template fails on a missing key (the previous file stays). \"false\" writes `<no value>` instead, consul-template's default: the vault-k8s translation sets it unless `error-on-missing-key` says true, so those files render as Vault Agent renders them.",
			set: func(_ *Annotations, s *Secret, v string) error { s.MissingKeyZero = v == "false"; return nil }},
		{Name: "file-name", PerSecret: true, Type: TypeString, Example: "config/app.properties",
			Doc: "Path of the file under its mount path, when it is not `<name>`: may hold subdirectories (created 0700), never `..`; " +
				"names starting with `.ramvault` are the agent's.",
			set: func(_ *Annotations, s *Secret, v string) error {
				f, err := cleanFileName(v)
				s.File = f
				return err
			}},
		{Name: "mount-path", PerSecret: true, Type: TypeString, Example: "/etc/app/tls",
			Doc: "Where this file's directory is mounted (read-only) in the target containers, when it is not `mount-path`. " +
				"Files of one mount path share a directory of the secrets volume, mounted there with a subPath.",
			set: func(_ *Annotations, s *Secret, v string) error {
				if !isMountPath(v) || strings.Contains(v, "..") || v == "/" {
					return fmt.Errorf("%q is not an absolute path for a volume mount", v)
				}
				s.MountPath = strings.TrimSuffix(v, "/")
				return nil
			}},
	}
}

// resourceRow is agent-<kind>-<resource>: one resource of the agent
// containers' requests or limits, over the injector's default.
func resourceRow(kind, resource, example string) Row {
	doc := fmt.Sprintf("The %s %s of each agent container, instead of the injector's `--agent-%s`.", resource, strings.TrimSuffix(kind, "s"), kind)
	if kind == "limits" && resource == "memory" {
		doc += " The Memory volumes' sizes are added to it (tmpfs pages count against the agent, which writes them)."
	}
	return Row{Name: "agent-" + kind + "-" + resource, Type: TypeQuantity, Example: example, Doc: doc,
		set: func(c *Annotations, _ *Secret, v string) error {
			if !isQuantity(v) {
				return fmt.Errorf("%q is not a Kubernetes quantity: write it like 250m, 0.5, 64Mi or 1G", v)
			}
			m := &c.AgentRequests
			if kind == "limits" {
				m = &c.AgentLimits
			}
			if *m == nil {
				*m = map[string]string{}
			}
			(*m)[resource] = v
			return nil
		}}
}

func parseRefresh(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it like 30s, 5m or 1h", v)
	}
	if d < time.Second {
		return 0, fmt.Errorf("%q is too short: at least 1s", v)
	}
	return d, nil
}

// ParseSize reads a byte size written as a plain number or with Ki, Mi, Gi.
func ParseSize(v string) (int64, error) {
	mult := int64(1)
	num := v
	for suf, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(v, suf) {
			num, mult = strings.TrimSuffix(v, suf), m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: write it like 512Ki or 4Mi", v)
	}
	if n > math.MaxInt64/mult {
		// n*mult would wrap round, and a huge size could pass a range check.
		return 0, fmt.Errorf("%q is too large a size: write it like 512Ki or 4Mi", v)
	}
	return n * mult, nil
}

// ParseParams reads comma-separated key=value pairs.
func ParseParams(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return out, nil
}
