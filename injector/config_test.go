package injector

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{VaultAddr: "https://vault:8200/", AllowedVaultAddrs: []string{"https://eu:8200/"}, AuthPath: "auth/k8s/"}.withDefaults()
	if c.Audience != DefaultAudience || c.TokenExpirationSeconds != DefaultTokenExpirationSeconds || c.AuthPath != "k8s" {
		t.Errorf("defaults: %+v", c)
	}
	if c.VaultAddr != "https://vault:8200" || c.AllowedVaultAddrs[0] != "https://eu:8200" {
		t.Errorf("addresses are not normalised like the annotation: %q %q", c.VaultAddr, c.AllowedVaultAddrs)
	}
	if !c.Resources.Limits.Memory().Equal(resource.MustParse("32Mi")) {
		t.Errorf("resources: %v", c.Resources)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want []string // substrings, all in the one error
	}{
		{name: "a minimal configuration is valid", cfg: Config{AgentImage: "agent"}},
		{name: "every problem is reported, each naming its flag",
			cfg: Config{VaultAddr: "vault:8200", AllowedVaultAddrs: []string{"https://eu:8200/v1"}, AuthPath: "a b", Audience: "a,b", TokenExpirationSeconds: 60,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}, Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}},
			want: []string{"--agent-image: empty", `--vault-addr: "vault:8200" is not a Vault address`, `--allowed-vault-addrs: "https://eu:8200/v1" is not a Vault address`,
				`--auth-path: "a b" is not a Vault mount path`, `--audience: "a,b" is not a token audience`, "--token-expiration-seconds: 60 is too short",
				"--agent-requests: memory 64Mi is above its limit 32Mi"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			errorMentions(t, err, tc.want...)
		})
	}
}

func TestInjectRejectsAnInvalidConfiguration(t *testing.T) {
	_, err := Inject(&corev1.Pod{}, Config{})
	var list spec.ErrorList
	if err == nil || errors.As(err, &list) || !strings.Contains(err.Error(), "injector configuration: --agent-image") {
		t.Fatalf("error %v (%T): want a configuration error, not a Pod's", err, err)
	}
}

// errorMentions fails the test unless err's message holds every want.
func errorMentions(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestClassicRevokeDelay(t *testing.T) {
	for _, c := range []struct {
		grace *int64
		want  int64
	}{{nil, 5}, {ptr.To[int64](30), 5}, {ptr.To[int64](12), 2}, {ptr.To[int64](10), 0}, {ptr.To[int64](0), 0}} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: c.grace}}
		if got := classicRevokeDelay(pod); got != c.want {
			t.Errorf("terminationGracePeriodSeconds %v: delay %d s, want %d s", ptr.Deref(c.grace, -1), got, c.want)
		}
	}
}
