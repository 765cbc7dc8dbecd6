package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

// Templates over several Vault requests, on real Pods: the files of one
// request come from one response, are re-issued together and the app is
// reloaded once.

// pkiMount enables a PKI mount of the test's own (root CA, role "web" for
// any name, certificates of at most 1m) through the root Vault client.
func (w *world) pkiMount() (mount string, ca *x509.Certificate) {
	w.t.Helper()
	ctx := context.Background()
	mount = "pki-" + w.ns
	if err := w.vc.Sys().MountWithContext(ctx, mount, &vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "1h"}}); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = w.vc.Sys().Unmount(mount) })
	s, err := w.vc.Logical().WriteWithContext(ctx, mount+"/root/generate/internal", map[string]any{"common_name": "ramvault e2e CA " + w.ns, "ttl": "1h", "key_type": "ec"})
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.vc.Logical().WriteWithContext(ctx, mount+"/roles/web", map[string]any{"allow_any_name": true, "max_ttl": "1m", "key_type": "ec", "key_bits": 256}); err != nil {
		w.t.Fatal(err)
	}
	pemCA, _ := s.Data["certificate"].(string)
	ca, err = x509.ParseCertificate(pemBlock(w.t, pemCA))
	if err != nil {
		w.t.Fatal(err)
	}
	return mount, ca
}

// tlsStatus is the example app's GET /status .tls (examples/app/tls.go).
type tlsStatus struct {
	Serial     string    `json:"serial"`
	NotAfter   time.Time `json:"not_after"`
	KeyMatches bool      `json:"key_matches"`
	ChainOK    bool      `json:"chain_ok"`
	Error      string    `json:"error"`
}

func (w *world) tlsAppStatus(pod string) (tlsStatus, int64, error) {
	var s struct {
		HTTPReloads int64      `json:"http_reloads"`
		TLS         *tlsStatus `json:"tls"`
	}
	b, err := w.cs.CoreV1().Pods(w.ns).ProxyGet("http", pod, "8080", "/status", nil).DoRaw(context.Background())
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err == nil && s.TLS == nil {
		err = fmt.Errorf("no tls in the status")
	}
	if err != nil {
		return tlsStatus{}, 0, err
	}
	return *s.TLS, s.HTTPReloads, nil
}

// served is the certificate the Pod serves on :8443, checked against ca
// (the handshake proves the server holds the certificate's key), dialled
// from the host, which is on the Pod network.
func served(t *testing.T, podIP string, ca *x509.Certificate) (*x509.Certificate, error) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(podIP, "8443"), &tls.Config{RootCAs: roots, ServerName: "web.e2e.test"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// PKI on a real Pod: tls.crt, tls.key and ca.crt from three templates over
// one pki/issue request are one issuance (the key matches, the certificate
// chains to the CA); before the 30s certificate ends they are re-issued
// together, the app (a real TLS server) is reloaded once and then serves
// the new certificate.
func TestThreePKIFilesFromOneIssuanceAreReissuedTogetherAndServed(t *testing.T) {
	w := newWorld(t, `path "pki-*" { capabilities = ["update"] }`)
	mount, ca := w.pkiMount()
	issue := fmt.Sprintf(`%q "common_name=web.e2e.test" "ttl=30s"`, mount+"/issue/web")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tls", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/containers": "app",
		"ramvault.io/template-tls.crt": `{{ with pkiCert ` + issue + ` }}{{ .Cert }}{{ end }}`,
		"ramvault.io/template-tls.key": `{{ with pkiCert ` + issue + ` }}{{ .Key }}{{ end }}`,
		"ramvault.io/template-ca.crt":  `{{ with secret ` + issue + ` }}{{ .Data.issuing_ca }}{{ end }}`,
		"ramvault.io/reload":           "http:http://127.0.0.1:8080/reload"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](10001), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{Name: "app", Image: exampleImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Args: []string{"-db-file=", "-config-file=", "-tls-cert=tls.crt", "-tls-key=tls.key", "-tls-ca=ca.crt", "-tls-listen=:8443"}}},
		}}
	w.create(pod)
	p := stack.WaitPod(t, w.cs, w.ns, "tls", 90*time.Second, stack.PodRunningReady)

	var first tlsStatus
	var firstCert *x509.Certificate
	stack.WaitFor(t, 30*time.Second, "the app serving the first certificate", func() bool {
		s, _, err := w.tlsAppStatus("tls")
		if err != nil {
			return false
		}
		c, err := served(t, p.Status.PodIP, ca)
		first, firstCert = s, c
		return err == nil
	})
	if !first.KeyMatches || !first.ChainOK || first.Error != "" {
		t.Fatalf("the first files: %+v; want the key of the certificate and a chain to ca.crt", first)
	}
	if first.Serial != serialOf(firstCert) {
		t.Errorf("the app loaded %s and serves %s", first.Serial, serialOf(firstCert))
	}

	// ~20s (2/3 of 30s) after the issue: all three files anew, one reload.
	var second tlsStatus
	var reloads int64
	var secondCert *x509.Certificate
	stack.WaitFor(t, 40*time.Second, "a new certificate served before the first one ends", func() bool {
		c, err := served(t, p.Status.PodIP, ca)
		if err != nil || serialOf(c) == serialOf(firstCert) {
			return false
		}
		second, reloads, err = w.tlsAppStatus("tls")
		secondCert = c
		return err == nil
	})
	if time.Now().After(firstCert.NotAfter) {
		t.Errorf("the new certificate came after the first one ended (%s)", firstCert.NotAfter)
	}
	if !second.KeyMatches || !second.ChainOK || second.Serial != serialOf(secondCert) {
		t.Errorf("after the re-issue: %+v, serving %s; want the new key pair, chained to the CA", second, serialOf(secondCert))
	}
	// The certificate served changes only at a reload: one re-issue, one reload.
	if reloads != 1 {
		t.Errorf("%d reloads for one re-issue of three files, want 1", reloads)
	}
	for _, c := range []string{"app", "ramvault-agent"} {
		if l := w.logs("tls", c); strings.Contains(l, "PRIVATE KEY") {
			t.Errorf("container %s logged a private key", c)
		}
	}
}

// One file from KV and database credentials (the example app reads its
// credentials from it; a second container hashes its parts once a second):
// at each re-issue the file holds new credentials and the same KV value,
// the app logs in to PostgreSQL with them, and is reloaded once per
// re-issue.
func TestOneFileOfKVAndDatabaseCredentialsAtReissue(t *testing.T) {
	w := newWorld(t, kvPolicy)
	kv := strings.Replace(w.kv(), "secret/data/", "secret/", 1) // consul-template's form: .Data.data
	db := w.dbRole("4s", "10s")
	const check = `while true; do f=/var/run/secrets/ramvault/db
  kv=$(sed -n 's/.*"kv":"\([^"]*\)".*/\1/p' $f | tr -d '\n' | sha256sum | cut -c1-16)
  user=$(sed -n 's/.*"username":"\([^"]*\)".*/\1/p' $f | tr -d '\n' | sha256sum | cut -c1-16)
  echo "kv=$kv user=$user"; sleep 1; done`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dsn", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/containers": "app,check",
		"ramvault.io/template-db": `{{ with secret "` + db + `" }}{"username":{{ toJSON .Data.username }},"password":{{ toJSON .Data.password }}{{ end }}` +
			`{{ with secret "` + kv + `" }},"kv":{{ toJSON .Data.data.password }}}{{ end }}`,
		"ramvault.io/reload": "http:http://127.0.0.1:8080/reload"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            "app",
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](10001), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{
				{Name: "app", Image: exampleImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"-db-file=db", "-config-file="},
					Env: []corev1.EnvVar{{Name: "PGHOST", Value: w.env.PodPGHost}, {Name: "PGPORT", Value: w.env.PodPGPort}, {Name: "PGSSLMODE", Value: "disable"}}},
				{Name: "check", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", check}},
			},
		}}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "dsn", 90*time.Second, stack.PodRunningReady)

	var s appStatus
	stack.WaitFor(t, 60*time.Second, "two re-issues, each logged in with", func() bool {
		var err error
		s, err = w.status("dsn")
		return err == nil && s.CredentialGeneration >= 3 && s.DBConnected
	})
	t.Logf("%d HTTP reloads, %d credential generations, %d logins ok, %d failed", s.HTTPReloads, s.CredentialGeneration, s.DBLoginsOK, s.DBLoginErrors)
	// Every reload brought new credentials (none for the KV part, none
	// twice for one re-issue); the first load was not a reload.
	if s.HTTPReloads != int64(s.CredentialGeneration-1) {
		t.Errorf("%d reloads for %d re-issues, want one each", s.HTTPReloads, s.CredentialGeneration-1)
	}
	if s.DBLoginErrors != 0 {
		t.Errorf("%d failed logins (last: %s)", s.DBLoginErrors, s.LastDBError)
	}
	// The file ends without a newline, and so does what sed prints of it:
	// the check drops newlines before hashing.
	sum := sha256.Sum256([]byte("planted-" + w.ns))
	wantKV := hex.EncodeToString(sum[:])[:16]
	// The check prints once a second: give it time to see the third
	// generation the app has already seen.
	var lines [][]string
	users := map[string]bool{}
	stack.WaitFor(t, 20*time.Second, "the check to see the three generations", func() bool {
		lines = regexp.MustCompile(`kv=(\w+) user=(\w+)`).FindAllStringSubmatch(w.logs("dsn", "check"), -1)
		clear(users)
		for _, m := range lines {
			users[m[2]] = true
		}
		return len(users) >= 3
	})
	for _, m := range lines {
		if m[1] != wantKV {
			t.Errorf("the file's KV part changed: %s, want %s; the check printed:\n%s", m[1], wantKV, w.logs("dsn", "check"))
			break
		}
	}
	for _, c := range []string{"app", "check", "ramvault-agent"} {
		if l := w.logs("dsn", c); strings.Contains(l, "planted-"+w.ns) {
			t.Errorf("container %s logged the planted KV value", c)
		}
	}
}

func serialOf(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	b := c.SerialNumber.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

func pemBlock(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
