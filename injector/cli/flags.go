package cli

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/pkg/version"
)

// defaultConfig is the Config the commands start from, before flags.
func defaultConfig() injector.Config {
	return injector.Config{
		AgentImage:             "localhost/ramvault-agent:" + version.Version,
		AuthPath:               injector.DefaultAuthPath,
		Audience:               injector.DefaultAudience,
		TokenExpirationSeconds: injector.DefaultTokenExpirationSeconds,
		Resources:              injector.DefaultResources(),
		NativeSidecars:         true,
		Version:                version.Version,
	}
}

// defaultsFlags are the flags that set the cluster defaults of a Config,
// shared by `ramvault inject`, `lint` and `webhook`, and --config, a YAML
// file of the same settings keyed by flag name. A flag given on the command
// line wins over the file.
type defaultsFlags struct {
	fs    *flag.FlagSet
	names []string // the flags that set the Config, in registration order
	file  string
	set   map[string]bool // after apply: the flags given on the command line or in the file
}

// bindDefaults registers the flags of c's cluster defaults on fs.
func bindDefaults(fs *flag.FlagSet, c *injector.Config) *defaultsFlags {
	d := &defaultsFlags{fs: fs}
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	fs.StringVar(&c.AgentImage, "agent-image", c.AgentImage, "image of the agent containers (the default is the image of this release as the local stack loads it)")
	fs.StringVar(&c.VaultAddr, "vault-addr", c.VaultAddr, "default Vault address of the agents, e.g. https://vault.vault.svc:8200")
	fs.Var(listFlag{&c.AllowedVaultAddrs}, "allowed-vault-addrs", "comma-separated Vault addresses Pods may choose with ramvault.io/vault-addr, besides --vault-addr")
	fs.StringVar(&c.VaultCAConfigMap, "vault-ca-configmap", c.VaultCAConfigMap, "ConfigMap (key ca.crt, in each Pod's namespace) with the PEM CA bundle of Vault's certificate, for Pods without ramvault.io/vault-ca-configmap; empty: the agent image's public roots")
	fs.StringVar(&c.AuthPath, "auth-path", c.AuthPath, "Kubernetes auth mount in Vault for Pods without ramvault.io/auth-path")
	fs.StringVar(&c.Audience, "audience", c.Audience, "audience of the agents' service-account tokens for Pods without ramvault.io/audience")
	fs.Int64Var(&c.TokenExpirationSeconds, "token-expiration-seconds", c.TokenExpirationSeconds, "lifetime of the agents' projected service-account tokens (at least 600)")
	fs.Var(resourcesFlag{&c.Resources.Requests}, "agent-requests", "resource requests of each agent container")
	fs.Var(resourcesFlag{&c.Resources.Limits}, "agent-limits", "resource limits of each agent container (the memory limit grows by the Pod's Memory volumes)")
	fs.BoolVar(&c.NativeSidecars, "native-sidecars", c.NativeSidecars, "the cluster runs native sidecars (Kubernetes >= 1.29): mode native is the default, else classic")
	fs.Var(listFlag{&c.AllowedNamespaces}, "allowed-namespaces", "comma-separated namespaces among kube-system and kube-public where Pods may be injected anyway")
	fs.BoolVar(&c.VaultK8sAnnotations, "vault-k8s-annotations", c.VaultK8sAnnotations, "also inject Pods opted in with vault.hashicorp.com/agent-inject, reading their vault-k8s annotations (docs/vault-k8s-annotations.md)")
	fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			d.names = append(d.names, f.Name)
		}
	})
	fs.StringVar(&d.file, "config", "", "YAML file of these defaults keyed by flag name (lists as sequences, resources as maps); flags on the command line win")
	return d
}

// apply reads the --config file, if any, into the flags not given on the
// command line. Call it after fs.Parse.
func (d *defaultsFlags) apply() error {
	d.set = map[string]bool{}
	d.fs.Visit(func(f *flag.Flag) { d.set[f.Name] = true })
	if d.file == "" {
		return nil
	}
	data, err := os.ReadFile(d.file)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", d.file, err)
	}
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(doc)) {
		if !slices.Contains(d.names, key) {
			errs = append(errs, fmt.Errorf("--config %s: unknown key %q: the keys are %s", d.file, key, strings.Join(d.names, ", ")))
			continue
		}
		if d.set[key] {
			continue
		}
		v, err := flagValue(doc[key])
		if err == nil {
			err = d.fs.Set(key, v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--config %s: %s: %w", d.file, key, err))
			continue
		}
		d.set[key] = true
	}
	return errors.Join(errs...)
}

// given says whether the flag was set on the command line or in the file.
func (d *defaultsFlags) given(name string) bool { return d.set[name] }

// flagValue writes a YAML value the way the flag takes it: a sequence as a
// comma-separated list, a map as name=value pairs.
func flagValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			s, err := flagValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			s, err := flagValue(v[k])
			if err != nil {
				return "", err
			}
			parts = append(parts, k+"="+s)
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("unexpected value %v (%T)", v, v)
}
