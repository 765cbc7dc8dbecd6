// Package vaultk8s reads the annotations of HashiCorp's vault-k8s injector
// (vault.hashicorp.com/*) as the ramvault.io/ annotations that do the same,
// so that ramvault serves Pods written for vault-k8s as they are, and
// `ramvault migrate` rewrites their manifests. One table (Table) says, for
// every annotation vault-k8s defines, how it maps, why it needs nothing, or
// why it is denied and what to do instead; the translation, its denials and
// the generated reference (docs/vault-k8s-annotations.md) all come from it.
// Like pkg/spec, it imports nothing of Kubernetes.
package vaultk8s

import (
	"path"
	"strconv"
	"strings"

	"github.com/ramvault/ramvault/pkg/spec"
)

// Prefix is the prefix of vault-k8s's annotations.
const Prefix = "vault.hashicorp.com/"

// The annotations of vault-k8s that the injector reads itself.
const (
	// InjectAnnotation opts a Pod in (a value strconv.ParseBool reads as true).
	InjectAnnotation = Prefix + "agent-inject"
	// StatusAnnotation is set by vault-k8s on the Pods it injected; its
	// webhook skips a Pod whose value is StatusInjected (agent.ShouldInject).
	// ramvault sets it on the Pods it injects from vault-k8s annotations,
	// so that with both injectors installed no Pod is injected twice.
	StatusAnnotation = Prefix + "agent-inject-status"
	StatusInjected   = "injected"
)

// Containers vault-k8s adds to a Pod.
var Containers = []string{"vault-agent", "vault-agent-init"}

// DefaultMountPath is vault-k8s's secret-volume-path.
const DefaultMountPath = "/vault/secrets"

// vault-k8s's default templates (agent-inject/agent/config.go,
// DefaultMapTemplate and DefaultJSONTemplate, v1.7.6), rendered for a secret
// without agent-inject-template-<name>, %s being its path.
const (
	DefaultMapTemplate  = "{{ with secret \"%s\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}"
	DefaultJSONTemplate = "{{ with secret \"%s\" }}{{ .Data | toJSON }}\n{{ end }}"
)

// Outcome is what becomes of an annotation.
type Outcome string

const (
	Mapped Outcome = "mapped" // carried over as ramvault.io/ annotations
	NoOp   Outcome = "no-op"  // needs nothing in ramvault (the reason is in Doc)
	Denied Outcome = "denied" // ramvault cannot do it the same way: the Pod is denied
)

// Row is one vault-k8s annotation. Family is "" for a single annotation,
// "name" for one per secret (vault.hashicorp.com/<Name>-<secret>), "key"
// for one per parameter.
type Row struct {
	Name    string
	Family  string
	Outcome Outcome
	// Ramvault is the ramvault annotation it becomes, or for a denied one
	// the ramvault way to the same result.
	Ramvault string
	Doc      string
	// Bool rows take what strconv.ParseBool reads (vault-k8s's
	// parseutil.ParseBool); "" is false.
	Bool bool
	// DeniedWhen is the value of a Bool row that is denied ("true" or
	// "false"); the other needs nothing. Other denied rows are denied
	// whenever they have a value (vault-k8s ignores them when empty).
	DeniedWhen string
	// apply carries the annotation over (Mapped rows, and rows denied or
	// mapped by value). suffix is the family's part of the key.
	apply func(t *translation, suffix, v string)
}

// Key is the annotation of the row, with suffix for a family.
func (r Row) Key(suffix string) string {
	if r.Family != "" {
		return Prefix + r.Name + "-" + suffix
	}
	return Prefix + r.Name
}

const (
	reloadWay     = "`ramvault.io/reload` (`signal:<SIG>`, `http:<url>` or `restart`): the agent reloads the app once after every file of a rotation is written"
	caWay         = "a ConfigMap with the CA at key `ca.crt` and `ramvault.io/vault-ca-configmap` (or the injector's `--vault-ca-configmap`), or `ramvault.io/vault-ca-secret`"
	annWay        = "the `ramvault.io/` annotations of [annotations.md](annotations.md)"
	clientCertWay = "remove it: the agent authenticates to Vault with its service-account token, not a client certificate"
)

// Table is every annotation of vault-k8s v1.7.6
// (agent-inject/agent/annotations.go), in documentation order.
func Table() []Row {
	noop := func(name, ramvault, doc string) Row {
		return Row{Name: name, Outcome: NoOp, Ramvault: ramvault, Doc: doc}
	}
	noopBool := func(name, ramvault, doc string) Row {
		r := noop(name, ramvault, doc)
		r.Bool = true
		return r
	}
	deny := func(name, family, way, doc string) Row {
		return Row{Name: name, Family: family, Outcome: Denied, Ramvault: way, Doc: doc}
	}
	copyTo := func(name, to, doc string) Row {
		return Row{Name: name, Outcome: Mapped, Ramvault: "`" + spec.Prefix + to + "`", Doc: doc,
			apply: func(t *translation, _, v string) { t.set(to, v, Prefix+name) }}
	}
	resource := func(kind, short, long string) Row {
		name := "agent-" + kind + "-" + short
		return copyTo(name, "agent-"+kind+"-"+long, "The "+long+" "+strings.TrimSuffix(kind, "s")+" of the agent containers. ramvault's memory limit also grows by its Memory volumes' sizes.")
	}
	return []Row{
		// Opt-in and status.
		{Name: "agent-inject", Outcome: Mapped, Ramvault: "`ramvault.io/inject`", Bool: true,
			Doc: "The opt-in, read as vault-k8s reads it (`true`, `True`, `1`, `t`…). With the injector's `--vault-k8s-annotations`, such a Pod is injected by ramvault. A Pod that also sets `ramvault.io/inject` is denied: choose one."},
		{Name: "agent-inject-status", Outcome: NoOp, Ramvault: "`ramvault.io/status`",
			Doc: "A Pod with `injected` was injected by vault-k8s and is left as it is. ramvault sets `injected` on the Pods it injects from vault-k8s annotations, so that vault-k8s's webhook skips them."},
		// Secrets.
		{Name: "agent-inject-secret", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/template-<name>`",
			Doc:   "Without a template, the file is vault-k8s's default template over that path (`agent-inject-default-template`), as a template-only file. With one, the path is not read (the template names its secrets): empty or stale values are accepted. The name is lower-cased unless `preserve-secret-case`; the file keeps vault-k8s's name (`ramvault.io/file-name-<name>` when it is not a ramvault name).",
			apply: func(t *translation, raw, _ string) { t.secret(raw) }},
		{Name: "agent-inject-template", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/template-<name>`",
			Doc:   "The consul-template template as it is (a template-only file: its `secret` calls are its dependencies, KV v2 as `.Data.data`).",
			apply: func(t *translation, raw, _ string) { t.secret(raw) }},
		{Name: "agent-inject-file", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/file-name-<name>`",
			Doc: "The file's path under the secret's volume path; subdirectories are kept, a leading `/` is dropped (vault-k8s joins it to the volume path), `..` is denied."},
		{Name: "agent-inject-perms", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/file-mode-<name>`",
			Doc: "The owner's bits: `0400`, or `0600` when the owner may write. Group and other bits are dropped: ramvault's files belong to the app's UID, which reads them as their owner."},
		{Name: "agent-inject-default-template", Outcome: Mapped, Ramvault: "`ramvault.io/template-<name>`",
			Doc: "`map` (vault-k8s's default) or `json`: the default template of the secrets without one, written out as their template."},
		{Name: "secret-volume-path", Outcome: Mapped, Ramvault: "`ramvault.io/mount-path`",
			Doc: "Always set: `/vault/secrets` when absent (vault-k8s's default), so the files stay where the app reads them."},
		{Name: "secret-volume-path", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/mount-path-<name>`",
			Doc: "The secret's own mount path (a directory of the one secrets volume, mounted with a subPath)."},
		{Name: "preserve-secret-case", Outcome: Mapped, Ramvault: "`ramvault.io/file-name-<name>`", Bool: true,
			Doc: "The file keeps the name's case (ramvault secret names are lower case; the file name is set)."},
		{Name: "preserve-secret-case", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/file-name-<name>`", Bool: true,
			Doc: "As `preserve-secret-case`, for one secret."},
		deny("agent-inject-template-file", "name", "the template inline in `ramvault.io/template-<name>`",
			"A template file from `agent-configmap`: ramvault reads no agent configuration."),
		{Name: "agent-template-left-delim", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/template-left-delim-<name>`",
			Doc: "The template's left delimiter."},
		{Name: "agent-template-right-delim", Family: "name", Outcome: Mapped, Ramvault: "`ramvault.io/template-right-delim-<name>`",
			Doc: "The template's right delimiter."},
		deny("agent-inject-command", "name", reloadWay,
			"ramvault's agent runs no commands (its image has no shell). What the commands did after a render — signal or restart the app, build a keystore — is a reload or a template function."),
		{Name: "error-on-missing-key", Family: "name", Outcome: Mapped, Bool: true, Ramvault: "`ramvault.io/error-on-missing-key-<name>`",
			Doc: "`true`: a missing key fails the render (the previous file stays) instead of writing `<no value>`."},
		{Name: "agent-inject-token", Outcome: Mapped, Ramvault: "`ramvault.io/inject-token`", Bool: true,
			Doc: "The agent's Vault token as the file `token` beside the secrets (0400, the app's).",
			apply: func(t *translation, _, v string) {
				if b, _ := strconv.ParseBool(v); b {
					t.set("inject-token", "true", Prefix+"agent-inject-token")
				}
			}},
		// Vault and auth.
		copyTo("service", "vault-addr", "Accepted only if the injector's `--vault-addr` or `--allowed-vault-addrs` lists it."),
		copyTo("role", "role", "Without it, ramvault uses the Pod's service-account name (vault-k8s requires a role)."),
		{Name: "auth-path", Outcome: Mapped, Ramvault: "`ramvault.io/auth-path`",
			Doc:   "`auth/kubernetes-prod` and `kubernetes-prod` both work (the `auth/` prefix is dropped).",
			apply: func(t *translation, _, v string) { t.set("auth-path", v, Prefix+"auth-path") }},
		{Name: "auth-type", Outcome: Mapped, Ramvault: "`ramvault.io/auth-type`",
			Doc: "`kubernetes` and `jwt`; any other method (aws, gcp, azure, approle, cert…) is denied: the agent logs in with the Pod's projected service-account token, through Vault's kubernetes or jwt method.",
			apply: func(t *translation, _, v string) {
				switch v {
				case "kubernetes", "jwt":
					t.set("auth-type", v, Prefix+"auth-type")
				default:
					t.deny(Prefix+"auth-type", "auth method %q cannot be used: ramvault logs in with the Pod's projected service-account token through Vault's kubernetes or jwt method; configure one of those for the role and set auth-type to it (or remove it: kubernetes)", v)
				}
			}},
		{Name: "auth-config", Family: "key", Outcome: Mapped, Ramvault: "`ramvault.io/role` (for `role`)",
			Doc: "`role` is the role (when `role` is not set); `path`, `token-path`, `remove-jwt-after-reading` and `remove-jwt-follows-symlinks` need nothing, as the agent presents its own projected token (audience `ramvault.io/audience`); any other key is denied."},
		copyTo("namespace", "vault-namespace", "The Vault Enterprise namespace."),
		deny("proxy-address", "", "remove it, and let the Pod reach Vault directly (an egress rule to Vault)", "The agent uses no HTTP proxy to Vault."),
		{Name: "tls-skip-verify", Outcome: Denied, Bool: true, DeniedWhen: "true", Ramvault: caWay,
			Doc: "TLS verification cannot be turned off: give the agent Vault's CA instead."},
		{Name: "ca-cert", Outcome: Mapped, Ramvault: "`ramvault.io/vault-ca-configmap` or `ramvault.io/vault-ca-secret`",
			Doc: "The service account's CA (`/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`) becomes the ConfigMap `kube-root-ca.crt`, which every namespace has; a file of `tls-secret` (`/vault/tls/<key>`) becomes `vault-ca-secret` and `vault-ca-key`; any other path is denied."},
		{Name: "tls-secret", Outcome: NoOp, Ramvault: "`ramvault.io/vault-ca-secret` (with `ca-cert`)",
			Doc: "Read with `ca-cert`; alone it only mounts a Secret that nothing reads."},
		copyTo("tls-server-name", "vault-tls-server-name", "The name Vault's certificate is checked against."),
		deny("ca-key", "", clientCertWay, "No TLS client authentication to Vault."),
		deny("client-cert", "", clientCertWay, "No TLS client authentication to Vault."),
		deny("client-key", "", clientCertWay, "No TLS client authentication to Vault."),
		noop("client-max-retries", "", "The agent retries with its own backoff (jitter, capped)."),
		noop("client-timeout", "", "Each Vault call has the agent's own timeout (10s)."),
		noop("auth-min-backoff", "", "Fixed policy: backoff with jitter from 250ms to a 30s cap."),
		noop("auth-max-backoff", "", "Fixed policy: backoff with jitter from 250ms to a 30s cap."),
		noopBool("agent-auto-auth-exit-on-err", "", "The agent retries login until the Pod ends (init: its deadline)."),
		// Shape of the injection.
		noop("agent-image", "", "The agent image is the injector's `--agent-image`."),
		noop("agent-request-namespace", "", "vault-k8s's own record of the request's namespace."),
		noopBool("agent-init-first", "`ramvault.io/agent-placement`", "ramvault's agent goes first among the init containers by default (before a mesh's init container, which would cut it off from Vault)."),
		noopBool("agent-pre-populate", "", "ramvault always writes the secrets before the app starts (native sidecar or init container); `false` changes nothing."),
		{Name: "agent-pre-populate-only", Outcome: Mapped, Ramvault: "`ramvault.io/mode: init-only`", Bool: true,
			Doc: "`true`: only the init container (Jobs complete).",
			apply: func(t *translation, _, v string) {
				if b, _ := strconv.ParseBool(v); b {
					t.set("mode", string(spec.ModeInitOnly), Prefix+"agent-pre-populate-only")
				}
			}},
		copyTo("agent-inject-containers", "containers", "The containers that get the secrets volume."),
		noopBool("agent-revoke-on-shutdown", "", "ramvault's sidecar always revokes its token and leases on SIGTERM (native and classic)."),
		noop("agent-revoke-grace", "", "The classic sidecar's preStop delay is derived from the Pod's grace period; native sidecars stop after the app."),
		noopBool("agent-enable-quit", "", "Native sidecars end with the Pod, so Jobs complete without a quit endpoint."),
		copyTo("template-static-secret-render-interval", "refresh", "Re-read interval of secrets without a lease."),
		noopBool("template-config-exit-on-retry-failure", "", "A sidecar never exits on a failed fetch: it keeps the previous files, retries and reports degraded."),
		noop("template-max-connections-per-host", "", "One connection pool, one request per distinct dependency of the Pod."),
		noop("template-lease-renewal-threshold", "", "Leases are renewed and re-issued on ramvault's own schedule."),
		resource("limits", "cpu", "cpu"), resource("limits", "mem", "memory"), resource("limits", "ephemeral", "ephemeral-storage"),
		resource("requests", "cpu", "cpu"), resource("requests", "mem", "memory"), resource("requests", "ephemeral", "ephemeral-storage"),
		copyTo("agent-run-as-user", "run-as-user", "The UID of the agent and of the files; it must be the target containers' (ramvault denies a UID that would make the files unreadable)."),
		copyTo("agent-run-as-group", "run-as-group", "The GID of the agent."),
		noopBool("agent-run-as-same-user", "", "ramvault's agent always runs as the app's UID, so that the app owns its files."),
		{Name: "agent-set-security-context", Outcome: Denied, Bool: true, DeniedWhen: "false", Ramvault: "remove it: the agent always runs with Pod Security `restricted`, as the app's UID (`ramvault.io/run-as-user` or the containers' `runAsUser`)",
			Doc: "The agent's security context is always set."},
		noopBool("agent-share-process-namespace", "", "ramvault sets `shareProcessNamespace` when a signal reload needs it; set it in the Pod spec for other uses."),
		noop("agent-service-account-token-volume-name", "", "ramvault mounts its own projected token (audience `ramvault.io/audience`) in the agent only."),
		deny("agent-configmap", "", annWay, "ramvault reads no Vault Agent configuration: each setting is an annotation."),
		deny("agent-extra-secret", "", annWay, "Only agent configurations (agent-configmap) read it."),
		{Name: "agent-cache-enable", Outcome: Denied, Bool: true, DeniedWhen: "true", Ramvault: "secrets as files (`ramvault.io/template-<name>`); an app that calls Vault itself can use `ramvault.io/inject-token`",
			Doc: "No caching proxy for the app: apps do not talk to Vault through the agent."},
		noop("agent-cache-use-auto-auth-token", "", "Only read with `agent-cache-enable`."),
		noop("agent-cache-listener-port", "", "Only read with `agent-cache-enable`."),
		noopBool("agent-cache-exit-on-err", "", "Only read with `agent-cache-enable`."),
		deny("agent-copy-volume-mounts", "", "remove it: the agent needs none of the app's volumes", "The agent reads nothing from the app's volumes."),
		deny("agent-json-patch", "", annWay+" (resources: `ramvault.io/agent-requests-*`, `agent-limits-*`)", "The agent containers are not patched by hand: they must pass Pod Security `restricted`."),
		deny("agent-init-json-patch", "", annWay+" (resources: `ramvault.io/agent-requests-*`, `agent-limits-*`)", "The agent containers are not patched by hand: they must pass Pod Security `restricted`."),
		noop("agent-disable-idle-connections", "", "The agent's connection pool is its own."),
		noop("agent-disable-keep-alives", "", "The agent's connection pool is its own."),
		{Name: "agent-telemetry", Family: "key", Outcome: NoOp, Doc: "The agent always serves Prometheus metrics on :9102."},
		noop("go-max-procs", "", "The agent sets GOMAXPROCS from its CPU limit."),
		noop("log-level", "", "JSON logs at info."),
		noop("log-format", "", "JSON logs."),
	}
}

// matchRow finds the row of an annotation name (without the prefix): a
// single annotation by its name, else the family with the longest name it
// starts with (agent-inject-template-file-x is a template file, as vault-k8s
// reads it, not the template of "file-x").
func matchRow(table []Row, name string) (*Row, string) {
	var best *Row
	var suffix string
	for i := range table {
		r := &table[i]
		if r.Family == "" {
			if name == r.Name {
				return r, ""
			}
			continue
		}
		p := r.Name + "-"
		if strings.HasPrefix(name, p) && len(name) > len(p) && (best == nil || len(r.Name) > len(best.Name)) {
			best, suffix = r, strings.TrimPrefix(name, p)
		}
	}
	return best, suffix
}

// joinFile is vault-k8s's file location (filepath.Join of the volume path
// and agent-inject-file), relative to the volume path; ok is false for a
// path that would leave the volume (a .. segment).
func joinFile(file string) (string, bool) {
	for _, seg := range strings.Split(file, "/") {
		if seg == ".." {
			return "", false
		}
	}
	return strings.TrimPrefix(path.Clean("/"+file), "/"), true
}
