package injector

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/pkg/spec"
)

func vaultK8sPod(annotations map[string]string, containers ...string) *corev1.Pod {
	a := map[string]string{"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/agent-inject-secret-db": "database/creds/web"}
	for k, v := range annotations {
		a[k] = v
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: a},
		Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1"}}}}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "x"})
	}
	return pod
}

func TestVaultK8sPods(t *testing.T) {
	on := Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: true, VaultK8sAnnotations: true}
	off := on
	off.VaultK8sAnnotations = false
	cases := []struct {
		name      string
		cfg       Config
		pod       *corev1.Pod
		unchanged bool
		err       string
	}{
		{name: "without the flag a vault-k8s Pod is not ramvault's", cfg: off, pod: vaultK8sPod(nil), unchanged: true},
		{name: "with it, it is injected and marked injected for vault-k8s", cfg: on, pod: vaultK8sPod(nil)},
		{name: "a Pod vault-k8s injected is left alone", cfg: on,
			pod: vaultK8sPod(map[string]string{"vault.hashicorp.com/agent-inject-status": "injected"}, "vault-agent"), unchanged: true},
		{name: "ramvault.io/inject false leaves it to vault-k8s", cfg: on, pod: vaultK8sPod(map[string]string{"ramvault.io/inject": "false"}), unchanged: true},
		{name: "both opt-ins are denied", cfg: on, pod: vaultK8sPod(map[string]string{"ramvault.io/inject": "true"}),
			err: "vault.hashicorp.com/agent-inject: the Pod opts in to both injectors"},
		{name: "vault-k8s's containers without its status are denied", cfg: on, pod: vaultK8sPod(nil, "vault-agent"),
			err: `already has vault-k8s's container "vault-agent"`},
		{name: "a problem with a translated annotation names the vault-k8s one", cfg: on,
			pod: vaultK8sPod(map[string]string{"vault.hashicorp.com/agent-inject-template-db": "{{ .Data", "vault.hashicorp.com/agent-limits-mem": "1Mi", "vault.hashicorp.com/agent-requests-mem": "64Mi"}),
			err: "vault.hashicorp.com/agent-inject-template-db: line 1"},
		{name: "the Pod's own ramvault.io/ settings win over the translation", cfg: on,
			pod: vaultK8sPod(map[string]string{"ramvault.io/mount-path": "/etc/app", "ramvault.io/run-as-user": "1000"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Inject(tc.pod, tc.cfg)
			if tc.err != "" {
				var list spec.ErrorList
				if !errors.As(err, &list) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, injected := out.Annotations[StatusAnnotation]
			if injected == tc.unchanged {
				t.Fatalf("injected: %v", injected)
			}
			if tc.unchanged {
				return
			}
			if out.Annotations["vault.hashicorp.com/agent-inject-status"] != "injected" || out.Annotations["ramvault.io/inject"] != "true" {
				t.Errorf("annotations: %v", out.Annotations)
			}
			want := "/vault/secrets"
			if v := tc.pod.Annotations["ramvault.io/mount-path"]; v != "" {
				want = v
			}
			if m := out.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0].MountPath != want {
				t.Errorf("mounts %+v, want one at %s", m, want)
			}
		})
	}
}

func TestDenialOfRequestsAboveLimitsNamesTheAnnotation(t *testing.T) {
	pod := vaultK8sPod(nil)
	pod.Annotations = map[string]string{"ramvault.io/inject": "true", "ramvault.io/secret-db": "kv/db", "ramvault.io/agent-requests-cpu": "2"}
	_, err := Inject(pod, Config{AgentImage: "agent", VaultAddr: "https://vault:8200", NativeSidecars: true})
	if err == nil || !strings.Contains(err.Error(), "ramvault.io/agent-requests-cpu: the agent's cpu request 2 would be above its limit 500m") {
		t.Fatalf("error %v", err)
	}
}
