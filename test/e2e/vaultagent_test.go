package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ramvault/ramvault/test/stack"
)

// The reference side of the differential test: vault-k8s v1.6.2's webhook
// (bin/vault-k8s, test/tools/build-vaultk8s.sh) writes the Vault Agent
// configuration of a Pod, and Vault Agent 1.21.0 (bin/vault) renders its
// templates once on the host.

// vaultK8s is a running bin/vault-k8s.
type vaultK8s struct {
	url    string
	client *http.Client
}

// startVaultK8s runs vault-k8s's webhook on a loopback port with a
// certificate of its own, until the test ends.
func startVaultK8s(t *testing.T) *vaultK8s {
	t.Helper()
	bin, err := stack.Tool("vault-k8s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the reference injector: %v (build it: test/tools/build-vaultk8s.sh, which make test runs)", err)
	}
	cert := stack.NewTestCert(t, net.IPv4(127, 0, 0, 1))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--listen", addr, "--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile, "--vault-address", "http://vault.invalid:8200", "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	v := &vaultK8s{url: "https://" + addr, client: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.CAPool}}}}
	stack.WaitFor(t, 20*time.Second, "vault-k8s to serve", func() bool {
		r, err := v.client.Get(v.url + "/health/ready")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode < 300
	})
	return v
}

// templates are the template stanzas of the Vault Agent configuration
// vault-k8s writes for the Pod (its init container's, which renders once,
// or its sidecar's when the Pod has no init container), as vault-k8s wrote
// them.
func (v *vaultK8s) templates(t *testing.T, name string, p *corev1.Pod) []map[string]any {
	t.Helper()
	// The Pod as the apiserver sends it: with the service-account token
	// volume its admission plugin adds, which vault-k8s looks for.
	pod := p.DeepCopy()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "kube-api-access-corpus",
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}})
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].VolumeMounts = append(pod.Spec.Containers[i].VolumeMounts, corev1.VolumeMount{
			Name: "kube-api-access-corpus", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	gvk := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "corpus", Kind: gvk, Namespace: pod.Namespace,
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}},
	})
	resp, err := v.client.Post(v.url+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatalf("%s: vault-k8s's answer: %v", name, err)
	}
	if review.Response == nil || !review.Response.Allowed || len(review.Response.Patch) == 0 {
		t.Fatalf("%s: vault-k8s did not inject the Pod: %+v", name, review.Response)
	}
	patch, err := jsonpatch.DecodePatch(review.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("%s: vault-k8s's patch: %v", name, err)
	}
	var out corev1.Pod
	if err := json.Unmarshal(patched, &out); err != nil {
		t.Fatal(err)
	}
	var config string
	for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
		for _, e := range c.Env {
			if e.Name == "VAULT_CONFIG" && config == "" {
				config = e.Value
			}
		}
	}
	if config == "" {
		t.Fatalf("%s: no VAULT_CONFIG in vault-k8s's containers", name)
	}
	b, err := base64.StdEncoding.DecodeString(config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Template []map[string]any `json:"template"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Template) == 0 {
		t.Fatalf("%s: vault-k8s wrote no templates", name)
	}
	return cfg.Template
}

// vaultAgentOnce renders every manifest's templates with Vault Agent 1.21.0
// on the host (exit_after_auth: one render, as vault-k8s's init container),
// logged in with a token of the role's policy, and returns the files by
// manifest and destination.
func vaultAgentOnce(t *testing.T, w *world, ms []manifest) map[string]map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	tok, err := w.vc.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{w.role}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.vc.Auth().Token().RevokeTree(tok.Auth.ClientToken) })
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600); err != nil {
		t.Fatal(err)
	}
	var templates []map[string]any
	for _, m := range ms {
		for _, tp := range m.templates {
			c := map[string]any{}
			for k, v := range tp {
				c[k] = v
			}
			c["destination"] = filepath.Join(dir, "out", m.name, tp["destination"].(string))
			templates = append(templates, c)
		}
	}
	cfg, _ := json.MarshalIndent(map[string]any{
		"vault": map[string]any{"address": w.env.VaultAddr},
		// A list of one method: Vault Agent 1.21.0 reads a method given as a
		// bare object as no method ("one and only one method block").
		"auto_auth":       map[string]any{"method": []any{map[string]any{"type": "token_file", "config": map[string]any{"token_file_path": tokenFile}}}},
		"exit_after_auth": true,
		"template_config": map[string]any{"exit_on_retry_failure": true},
		"template":        templates,
	}, "", "  ")
	conf := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(conf, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vaultBin, err := stack.Tool("vault")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, vaultBin, "agent", "-config="+conf, "-log-level=warn")
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vault agent: %v\n%s", err, out)
	}
	t.Logf("Vault Agent rendered %d templates in %s", len(templates), time.Since(start).Round(time.Millisecond))
	want := map[string]map[string][]byte{}
	for _, m := range ms {
		want[m.name] = map[string][]byte{}
		for _, tp := range m.templates {
			dest := tp["destination"].(string)
			b, err := os.ReadFile(filepath.Join(dir, "out", m.name, dest))
			if err != nil {
				t.Fatalf("%s: Vault Agent wrote no %s: %v", m.name, dest, err)
			}
			want[m.name][dest] = b
		}
	}
	return want
}
