package injector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ramvault/ramvault/pkg/spec"
)

// Config holds the cluster's defaults for injection: set once by whoever runs
// the injector (flags of the webhook or of the CLI), the same for every Pod.
// Zero fields take the defaults below; Validate reports what is wrong.
type Config struct {
	// AgentImage is the image of the agent containers.
	AgentImage string
	// VaultAddr is the Vault address agents use unless a Pod's
	// ramvault.io/vault-addr names another one from AllowedVaultAddrs.
	VaultAddr string
	// AllowedVaultAddrs are the other addresses a Pod may ask for.
	AllowedVaultAddrs []string
	// VaultAddrsUnknown says the cluster's Vault addresses are not known
	// (`ramvault lint` of a manifest in CI, without the injector's
	// configuration): a valid ramvault.io/vault-addr passes, and a Pod
	// without one is not refused for the missing default. The webhook
	// never sets it.
	VaultAddrsUnknown bool
	// VaultCAConfigMap names the ConfigMap (key ca.crt, in each Pod's
	// namespace) with the CA bundle of Vault's certificate, for Pods that
	// set no ramvault.io/vault-ca-configmap. Empty: the agent image's
	// public roots.
	VaultCAConfigMap string
	// AuthPath is the Kubernetes auth mount used when a Pod sets no
	// ramvault.io/auth-path (default "kubernetes").
	AuthPath string
	// Audience of the projected service-account token when a Pod sets no
	// ramvault.io/audience (default "vault").
	Audience string
	// TokenExpirationSeconds of the projected token (default 3600, at least 600).
	TokenExpirationSeconds int64
	// Resources of each agent container (default DefaultResources). The
	// memory limit grows by the size of the Memory volumes the agent fills,
	// since tmpfs pages count against the container that writes them.
	Resources corev1.ResourceRequirements
	// NativeSidecars says the cluster runs init containers with
	// restartPolicy Always (Kubernetes ≥ 1.29); it makes mode native the default.
	NativeSidecars bool
	// AllowedNamespaces lifts the refusal to inject into kube-system and kube-public.
	AllowedNamespaces []string
	// Version is written into the ramvault.io/status annotation.
	Version string
	// VaultK8sAnnotations serves Pods opted in to HashiCorp vault-k8s's
	// injection (vault.hashicorp.com/agent-inject): their vault.hashicorp.com/
	// annotations are read as the ramvault.io/ ones that do the same
	// (package vaultk8s), and the Pod is marked injected for vault-k8s too.
	VaultK8sAnnotations bool
}

// Defaults of Config.
const (
	DefaultAuthPath               = "kubernetes"
	DefaultAudience               = "vault"
	DefaultTokenExpirationSeconds = 3600
)

// DefaultResources are the agent's requests and limits when Config sets none.
// The agent idles at ~0 CPU; its CPU limit only caps the bursts of a start
// (Go runtime, login, first write: ~30 ms of CPU) and of a rotation. At 100m
// the kernel spread that start over ~250 ms (10 ms of CPU per 100 ms), long
// enough for the kubelet's 1 s relist to miss the init container's exit on
// most Pods: a second more to Ready. 500m (vault-k8s's default too) lets it
// finish in one CFS period.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("16Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("500m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
	}
}

// withDefaults fills the zero fields and normalises the Vault addresses the
// way the vault-addr annotation is normalised, so that they compare equal.
func (c Config) withDefaults() Config {
	if c.AuthPath == "" {
		c.AuthPath = DefaultAuthPath
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.TokenExpirationSeconds == 0 {
		c.TokenExpirationSeconds = DefaultTokenExpirationSeconds
	}
	if len(c.Resources.Requests) == 0 && len(c.Resources.Limits) == 0 {
		c.Resources = DefaultResources()
	}
	c.AuthPath = strings.Trim(strings.TrimPrefix(c.AuthPath, "auth/"), "/")
	c.VaultAddr = strings.TrimSuffix(c.VaultAddr, "/")
	allowed := make([]string, 0, len(c.AllowedVaultAddrs))
	for _, a := range c.AllowedVaultAddrs {
		allowed = append(allowed, strings.TrimSuffix(a, "/"))
	}
	c.AllowedVaultAddrs = allowed
	return c
}

// Validate reports every problem with the configuration (after defaulting),
// each naming the flag that sets it. Values that Pods could also set through
// annotations are checked by the same rules as the annotations.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.AgentImage == "" {
		errs = append(errs, errors.New("--agent-image: empty: name the ramvault-agent image"))
	}
	check := func(flag, annotation, value string) {
		if _, err := spec.Parse(map[string]string{spec.Prefix + annotation: value}); err != nil {
			var list spec.ErrorList
			if errors.As(err, &list) && len(list) > 0 {
				err = errors.New(list[0].Message)
			}
			errs = append(errs, fmt.Errorf("%s: %w", flag, err))
		}
	}
	if c.VaultAddr != "" {
		check("--vault-addr", "vault-addr", c.VaultAddr)
	}
	for _, a := range c.AllowedVaultAddrs {
		check("--allowed-vault-addrs", "vault-addr", a)
	}
	if c.VaultCAConfigMap != "" {
		check("--vault-ca-configmap", "vault-ca-configmap", c.VaultCAConfigMap)
	}
	check("--auth-path", "auth-path", c.AuthPath)
	check("--audience", "audience", c.Audience)
	if c.TokenExpirationSeconds < 600 {
		errs = append(errs, fmt.Errorf("--token-expiration-seconds: %d is too short: the kubelet needs at least 600", c.TokenExpirationSeconds))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Resources.Limits)) {
		q := c.Resources.Limits[name]
		if r, ok := c.Resources.Requests[name]; ok && r.Cmp(q) > 0 {
			errs = append(errs, fmt.Errorf("--agent-requests: %s %s is above its limit %s", name, r.String(), q.String()))
		}
	}
	return errors.Join(errs...)
}

// namespaceAllowed says whether Pods of namespace ns may be injected:
// kube-system and kube-public hold the cluster's own components, which must
// not depend on Vault to start, unless the operator says otherwise.
func (c Config) namespaceAllowed(ns string) bool {
	return (ns != "kube-system" && ns != "kube-public") || slices.Contains(c.AllowedNamespaces, ns)
}

// vaultAddrs is every address a Pod may use: the default first.
func (c Config) vaultAddrs() []string {
	var out []string
	if c.VaultAddr != "" {
		out = append(out, c.VaultAddr)
	}
	for _, a := range c.AllowedVaultAddrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
