package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vault "github.com/hashicorp/vault/api"

	"github.com/ramvault/ramvault/test/stack"
)

// JWT auth: for clusters whose Vault cannot reach the apiserver for a
// TokenReview, Vault's jwt method verifies the projected token itself
// against the cluster's service-account issuer key. The agent logs in the
// same way (role + jwt at auth/<path>/login); the Pod names the mount with
// ramvault.io/auth-path. Vault's jwt mount here has no Kubernetes address
// at all: it cannot do a TokenReview.
func TestJWTAuthLogsInWithoutTokenReview(t *testing.T) {
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("reads the stack's service-account public key from its state directory")
	}
	pub, err := os.ReadFile(filepath.Join(w.env.StateDir, "pki", "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mount := "jwt-" + w.ns
	if err := w.vc.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vault.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.vc.Sys().DisableAuth(mount) })
	if _, err := w.vc.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"jwt_validation_pubkeys": []string{string(pub)},
		"bound_issuer":           "https://kubernetes.default.svc.cluster.local",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.vc.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/"+w.role, map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{"vault"},
		"user_claim":      "sub",
		"bound_subject":   "system:serviceaccount:" + w.ns + ":app",
		"token_policies":  []string{w.role},
		"token_ttl":       "10m",
	}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "jwt", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/auth-path": mount,
		"ramvault.io/secret-kv": w.kv(), "ramvault.io/key-kv": "password"}},
		Spec: appSpec(`test -s /var/run/secrets/ramvault/kv && echo has-secret; sleep 3600`)}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "jwt", 90*time.Second, stack.PodRunningReady)
	stack.WaitFor(t, 20*time.Second, "the app to see its secret", func() bool {
		return strings.Contains(w.logs("jwt", "app"), "has-secret")
	})
	// The Pod's token came from the jwt mount.
	list, err := w.vc.Logical().List("auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range list.Data["keys"].([]any) {
		s, err := w.vc.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": a})
		if err != nil || s == nil {
			continue
		}
		if p, _ := s.Data["path"].(string); p == "auth/"+mount+"/login" {
			found = true
		}
	}
	if !found {
		t.Error("no Vault token was issued by the jwt mount")
	}
}
