package e2e

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector/vaultk8s"
	"github.com/ramvault/ramvault/test/stack"
)

// The differential test: the vault-k8s manifests of the corpus
// (injector/testdata/vaultk8s, each with its public source) on real Pods
// through the in-cluster webhook, against what Vault Agent 1.21.0 renders
// from the Vault Agent configuration vault-k8s v1.6.2 itself writes for the
// same Pod (bin/vault-k8s, run on the host; bin/vault agent, run once on
// the host with a token of the same policy), over the same Vault data.
// A KV file is the same bytes; a file with leased or written secrets
// (database credentials, PKI) has the same shape once the values of one
// issuance are masked, and its certificates chain to their CA and match
// their keys.

// corpusMounts are the Vault mounts the corpus names, by kind. Each test
// run mounts its own copy (<mount>-<suffix>) and rewrites the paths, so runs
// and other tests share nothing.
var corpusMounts = map[string]string{
	"secret": "kv-v2", "internal": "kv-v2", "demo-app": "kv-v2", "kv1": "kv-v1",
	"database": "database", "pki": "pki", "pki_int": "pki",
}

// environment are the vault-k8s annotations that say how to reach and log
// in to the manifest's own Vault (address, Enterprise namespace, auth
// method and mount, TLS): on the stack the Pod logs in to the stack's Vault
// with the test's role, so they are dropped (the goldens check their
// translation; jwt_test.go logs in through jwt).
var environment = []string{"service", "namespace", "auth-path", "auth-type", "ca-cert", "ca-key", "tls-secret", "tls-server-name",
	"client-cert", "client-key"}

// manifest is one corpus manifest's Pod, rewritten for the stack.
type manifest struct {
	name string
	pod  *corev1.Pod
	// templates are vault-k8s's template stanzas for the Pod.
	templates []map[string]any
	target    string // the container whose log has the files
}

// corpus reads the manifests that ramvault injects as they are written
// (those with an .injected golden), but for a Pod vault-k8s already
// injected, which both leave alone.
func corpus(t *testing.T) []manifest {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "injector", "testdata", "vaultk8s", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	for _, f := range files {
		if _, err := os.Stat(strings.TrimSuffix(f, ".yaml") + ".injected"); err != nil {
			continue // denied as written: the .err goldens show the messages
		}
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := stack.DecodeObjects(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			tmpl, restart, ok := podTemplate(t, o)
			if !ok {
				continue
			}
			if in, _ := vaultk8s.OptedIn(tmpl.Annotations); !in || vaultk8s.Injected(tmpl.Annotations) {
				continue
			}
			pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
			if pod.Spec.RestartPolicy == "" {
				pod.Spec.RestartPolicy = restart
			}
			out = append(out, manifest{name: strings.TrimSuffix(filepath.Base(f), ".yaml"), pod: pod})
		}
	}
	return out
}

// podTemplate finds the Pod (template) of a workload.
func podTemplate(t *testing.T, o *unstructured.Unstructured) (corev1.PodTemplateSpec, corev1.RestartPolicy, bool) {
	var path []string
	restart := corev1.RestartPolicyAlways
	switch o.GetKind() {
	case "Pod":
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		path = []string{"spec", "template"}
	case "Job":
		path, restart = []string{"spec", "template"}, corev1.RestartPolicyNever
	case "CronJob":
		path, restart = []string{"spec", "jobTemplate", "spec", "template"}, corev1.RestartPolicyNever
	default:
		return corev1.PodTemplateSpec{}, "", false
	}
	m := o.Object
	if path != nil {
		var ok bool
		if m, ok, _ = unstructured.NestedMap(o.Object, path...); !ok {
			return corev1.PodTemplateSpec{}, "", false
		}
	}
	var tmpl corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"metadata": m["metadata"], "spec": m["spec"]}, &tmpl); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return tmpl, restart, true
}

// vaultPaths finds the Vault paths of a vault-k8s annotation value: the
// whole value of agent-inject-secret-*, the "..." after secret or pkiCert
// in a template.
var (
	secretValuePath = regexp.MustCompile(`^()([A-Za-z0-9_-]+)/`)
	templatePath    = regexp.MustCompile(`((?:secret|pkiCert)\s+")([A-Za-z0-9_-]+)/`)
)

// stage is the Vault side of one run: its mounts and data.
type stage struct {
	w      *world
	suffix string
	mounts map[string]string // corpus mount -> this run's
	kv     map[string]bool   // corpus KV paths read
	db     map[string]bool   // corpus database roles
	cas    map[string]*x509.Certificate
	values []string // planted values
}

// rewrite points the manifest at this run's mounts and role and the
// stack's Vault, and the containers at busybox printing the files.
func (s *stage) rewrite(t *testing.T, m *manifest) {
	ann := m.pod.Annotations
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		name, ok := strings.CutPrefix(k, vaultk8s.Prefix)
		if !ok {
			continue
		}
		if slices.Contains(environment, name) || strings.HasPrefix(name, "auth-config-") {
			delete(ann, k)
			continue
		}
		re := templatePath
		switch {
		case strings.HasPrefix(name, "agent-inject-secret-"):
			re = secretValuePath
		case strings.HasPrefix(name, "agent-inject-template-"):
		default:
			continue
		}
		ann[k] = re.ReplaceAllStringFunc(ann[k], func(match string) string {
			sub := re.FindStringSubmatch(match)
			mount := sub[2]
			if _, ok := corpusMounts[mount]; !ok {
				t.Fatalf("%s: %s names mount %q, which corpusMounts does not know", m.name, k, mount)
			}
			if s.mounts[mount] == "" {
				s.mounts[mount] = mount + "-" + s.suffix
			}
			return sub[1] + s.mounts[mount] + "/"
		})
		s.note(ann[k], re)
	}
	ann[vaultk8s.Prefix+"role"] = s.w.role
	m.pod.Namespace = s.w.ns
	m.pod.Spec.ServiceAccountName = "app"
	m.pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	m.pod.Spec.NodeSelector, m.pod.Spec.Affinity, m.pod.Spec.Tolerations = nil, nil, nil
	m.pod.Spec.PriorityClassName = ""
	for i := range m.pod.Spec.InitContainers {
		c := &m.pod.Spec.InitContainers[i]
		busybox(c, "true")
	}
}

// note records the KV paths and database roles a rewritten value reads.
func (s *stage) note(v string, re *regexp.Regexp) {
	full := regexp.MustCompile(re.String() + `([^"\s]*)`)
	for _, sub := range full.FindAllStringSubmatch(v, -1) {
		mount, rest := sub[2], sub[3]
		for orig, ours := range s.mounts {
			if ours != mount {
				continue
			}
			switch corpusMounts[orig] {
			case "kv-v1", "kv-v2":
				s.kv[orig+"/"+rest] = true
			case "database":
				if role, ok := strings.CutPrefix(rest, "creds/"); ok {
					s.db[role] = true
				}
			}
		}
	}
}

// busybox makes a container run script in busybox, keeping its user.
func busybox(c *corev1.Container, script string) {
	c.Image, c.ImagePullPolicy = stack.BusyboxImage, corev1.PullNever
	c.Command, c.Args = []string{"sh", "-c", script}, nil
	c.Env, c.EnvFrom = nil, nil
	c.LivenessProbe, c.ReadinessProbe, c.StartupProbe, c.Lifecycle = nil, nil, nil, nil
	c.WorkingDir = ""
}

// dumpScript prints each file (base64, one line each) and then waits (or
// ends, in a Pod that is not restarted).
func dumpScript(files []string, stay bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "for f in")
	for _, f := range files {
		fmt.Fprintf(&b, " '%s'", f)
	}
	b.WriteString(`; do if [ -f "$f" ]; then echo "file $f $(base64 -w0 "$f")"; else echo "missing $f"; fi; done; echo dump-done`)
	if stay {
		b.WriteString("; exec sleep 3600")
	}
	return b.String()
}

// setUp mounts this run's copies of the corpus mounts and writes the data.
func (s *stage) setUp(t *testing.T) {
	ctx := context.Background()
	vc := s.w.vc
	for _, orig := range slices.Sorted(maps.Keys(s.mounts)) {
		mount := s.mounts[orig]
		in := &vault.MountInput{Config: vault.MountConfigInput{MaxLeaseTTL: "96h"}}
		switch corpusMounts[orig] {
		case "kv-v1":
			in.Type, in.Options = "kv", map[string]string{"version": "1"}
		case "kv-v2":
			in.Type, in.Options = "kv", map[string]string{"version": "2"}
		default:
			in.Type = corpusMounts[orig]
		}
		if err := vc.Sys().MountWithContext(ctx, mount, in); err != nil {
			t.Fatalf("mount %s: %v", mount, err)
		}
		t.Cleanup(func() { _ = vc.Sys().Unmount(mount) })
		switch corpusMounts[orig] {
		case "database":
			s.database(t, mount)
		case "pki":
			s.pki(t, orig, mount)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(s.kv)) {
		orig, rest, _ := strings.Cut(p, "/")
		data := s.seed(p)
		var err error
		for try := 0; try < 50; try++ { // a new KV v2 mount takes a moment to upgrade
			if corpusMounts[orig] == "kv-v1" {
				_, err = vc.Logical().WriteWithContext(ctx, s.mounts[orig]+"/"+rest, data)
			} else {
				_, err = vc.KVv2(s.mounts[orig]).Put(ctx, strings.TrimPrefix(rest, "data/"), data)
			}
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
}

// seed is the data of one KV secret: every key the corpus's templates read,
// with values of their own per path, characters that JSON and YAML escape,
// a number, a bool, a list and a map (which the default template prints
// with Go's %v), and the planted value the logs are scanned for.
func (s *stage) seed(path string) map[string]any {
	slug := strings.NewReplacer("/", "-", "_", "-").Replace(path)
	planted := "planted-" + s.w.ns + "-" + slug
	s.values = append(s.values, planted)
	plant(s.w.env, planted)
	return map[string]any{
		"username": "user-" + slug, "password": planted + `-"q"<&>é`,
		"url": "https://" + slug + ".example/?a=1&b=2", "token": "tok-" + slug, "value": "value of " + slug,
		"db_host": slug + ".db.internal", "payments_api_key": "key-" + slug,
		"port": 5432, "ratio": 0.25, "enabled": true, "tags": []any{"a", "b"}, "nested": map[string]any{"k": "v"},
	}
}

// database configures a mount on the stack's PostgreSQL whose credentials
// the mask recognises: user names rvd_ and 20 lower-case characters,
// passwords 24.
func (s *stage) database(t *testing.T, mount string) {
	ctx := context.Background()
	vc := s.w.vc
	policy := "rvd-" + s.suffix
	if _, err := vc.Logical().WriteWithContext(ctx, "sys/policies/password/"+policy, map[string]any{
		"policy": `length = 24
rule "charset" { charset = "abcdefghijklmnopqrstuvwxyz0123456789" }`}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = vc.Logical().Delete("sys/policies/password/" + policy) })
	if _, err := vc.Logical().WriteWithContext(ctx, mount+"/config/postgres", map[string]any{
		"plugin_name":       "postgresql-database-plugin",
		"connection_url":    fmt.Sprintf("postgresql://{{username}}:{{password}}@127.0.0.1:%d/postgres?sslmode=disable", stack.PostgresPort),
		"username":          s.w.env.PGUser,
		"password":          s.w.env.PGPassword,
		"allowed_roles":     "*",
		"username_template": `{{ printf "rvd_%s" (random 20 | lowercase) }}`,
		"password_policy":   policy,
	}); err != nil {
		t.Fatalf("database config: %v", err)
	}
	for role := range s.db {
		if _, err := vc.Logical().WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{
			"db_name":             "postgres",
			"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
			"default_ttl":         "10m", "max_ttl": "1h",
		}); err != nil {
			t.Fatalf("database role %s: %v", role, err)
		}
	}
}

// pki makes a mount a root CA with roles web and app for any name.
func (s *stage) pki(t *testing.T, orig, mount string) {
	ctx := context.Background()
	vc := s.w.vc
	sec, err := vc.Logical().WriteWithContext(ctx, mount+"/root/generate/internal", map[string]any{"common_name": "corpus " + orig + " CA", "ttl": "96h", "key_type": "ec"})
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"web", "app"} {
		if _, err := vc.Logical().WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{"allow_any_name": true, "max_ttl": "48h", "key_type": "ec", "key_bits": 256}); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := x509.ParseCertificate(pemBlock(t, sec.Data["certificate"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	s.cas[mount] = ca
}

// policy lets the role (and the host's token) use this run's mounts.
func (s *stage) policy() string {
	var b strings.Builder
	for _, m := range slices.Sorted(maps.Values(s.mounts)) {
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\", \"update\"] }\n", m+"/*")
	}
	b.WriteString(`path "sys/leases/revoke" { capabilities = ["update"] }` + "\n")
	return b.String()
}

func TestVaultK8sManifestsRenderAsVaultAgentDoes(t *testing.T) {
	ms := corpus(t)
	if len(ms) < 25 {
		t.Fatalf("%d manifests in the corpus that ramvault injects as written, want at least 25", len(ms))
	}
	// The role's policy depends on the mounts the manifests name: rewrite
	// first (into a placeholder world), then make the role.
	w := newWorld(t, `path "sys/leases/revoke" { capabilities = ["update"] }`)
	s := &stage{w: w, suffix: w.ns[len(w.ns)-6:], mounts: map[string]string{}, kv: map[string]bool{}, db: map[string]bool{}, cas: map[string]*x509.Certificate{}}
	for i := range ms {
		s.rewrite(t, &ms[i])
	}
	if err := w.vc.Sys().PutPolicy(w.role, s.policy()); err != nil {
		t.Fatal(err)
	}
	s.setUp(t)

	ref := startVaultK8s(t)
	for i := range ms {
		m := &ms[i]
		m.templates = ref.templates(t, m.name, m.pod)
		var files []string
		for _, tp := range m.templates {
			files = append(files, tp["destination"].(string))
		}
		m.target = firstTarget(m.pod)
		stay := m.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways
		for j := range m.pod.Spec.Containers {
			busybox(&m.pod.Spec.Containers[j], dumpScript(files, stay))
		}
		m.pod.Name = m.name
		m.pod.Labels = nil
	}

	// The Pods first (they take longest), then Vault Agent on the host.
	for i := range ms {
		w.create(ms[i].pod)
	}
	want := vaultAgentOnce(t, w, ms)

	got := map[string]map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan string, len(ms))
	for i := range ms {
		wg.Add(1)
		go func(m *manifest) {
			defer wg.Done()
			files, err := podFiles(w, m, 150*time.Second)
			if err != nil {
				errs <- fmt.Sprintf("%s: %v", m.name, err)
				return
			}
			mu.Lock()
			got[m.name] = files
			mu.Unlock()
		}(&ms[i])
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}

	kvFiles, leasedFiles := 0, 0
	for _, m := range ms {
		for _, tp := range m.templates {
			dest := tp["destination"].(string)
			g, wa := got[m.name][dest], want[m.name][dest]
			if g == nil {
				t.Errorf("%s: no %s in the Pod", m.name, dest)
				continue
			}
			if strings.Contains(string(g), "<no value>") || len(g) == 0 {
				t.Errorf("%s: %s reads a key the data does not have (or nothing): extend seed()", m.name, dest)
			}
			if leased(s, tp["contents"].(string)) {
				leasedFiles++
				if mg, mw := mask(g), mask(wa); mg != mw {
					t.Errorf("%s: %s differs from Vault Agent's in shape:\nramvault:    %q\nVault Agent: %q", m.name, dest, mg, mw)
				} else if mg == string(g) {
					t.Errorf("%s: %s holds no credentials or certificate", m.name, dest)
				}
				continue
			}
			kvFiles++
			if string(g) != string(wa) {
				t.Errorf("%s: %s differs from Vault Agent's:\nramvault:    %q\nVault Agent: %q", m.name, dest, redact(s, g), redact(s, wa))
			}
		}
		checkCertificates(t, s, m.name, got[m.name])
		for _, c := range append([]string{"ramvault-agent", "ramvault-agent-init"}, containerNames(m.pod)...) {
			if l, ok := logsIfAny(w, m.name, c); ok && s.leaks(l) {
				t.Errorf("%s: container %s logged a planted value", m.name, c)
			}
		}
	}
	t.Logf("%d manifests: %d KV files byte-identical to Vault Agent's, %d files of leased secrets compared in shape", len(ms), kvFiles, leasedFiles)
}

// firstTarget is the first container vault-k8s gives the secrets to.
func firstTarget(p *corev1.Pod) string {
	if v := p.Annotations[vaultk8s.Prefix+"agent-inject-containers"]; v != "" {
		return strings.TrimSpace(strings.Split(v, ",")[0])
	}
	return p.Spec.Containers[0].Name
}

func containerNames(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

// logsIfAny is a container's log, or false if it has none (an agent
// container the Pod does not have in its mode).
func logsIfAny(w *world, pod, container string) (string, bool) {
	b, err := w.cs.CoreV1().Pods(w.ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	return string(b), err == nil
}

// podFiles waits for the target container's dump and decodes it.
func podFiles(w *world, m *manifest, timeout time.Duration) (map[string][]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, _ := logsIfAny(w, m.name, m.target)
		if strings.Contains(l, "dump-done") {
			files := map[string][]byte{}
			for _, line := range strings.Split(l, "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) >= 2 && f[0] == "file":
					enc := ""
					if len(f) == 3 {
						enc = f[2]
					}
					b, err := base64.StdEncoding.DecodeString(enc)
					if err != nil {
						return nil, fmt.Errorf("%s: %v", f[1], err)
					}
					files[f[1]] = b
				case len(f) == 2 && f[0] == "missing":
					return nil, fmt.Errorf("container %s has no %s", m.target, f[1])
				}
			}
			return files, nil
		}
		if time.Now().After(deadline) {
			p, _ := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), m.name, metav1.GetOptions{})
			return nil, fmt.Errorf("no dump within %s\n%s", timeout, stack.DescribePod(w.cs, w.ns, m.name, p))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// leased says whether a template reads a leased or written secret
// (database credentials, a PKI issue).
func leased(s *stage, contents string) bool {
	for orig, ours := range s.mounts {
		if k := corpusMounts[orig]; (k == "database" || k == "pki") && strings.Contains(contents, `"`+ours+"/") {
			return true
		}
	}
	return false
}

var (
	pemRe      = regexp.MustCompile(`-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]+-----END ([A-Z ]+)-----`)
	dbUserRe   = regexp.MustCompile(`rvd_[a-z0-9]{20}`)
	dbPassRe   = regexp.MustCompile(`\b[a-z0-9]{24}\b`)
	serialRe   = regexp.MustCompile(`\b[0-9a-f]{2}(:[0-9a-f]{2}){15,}\b`)
	unixTimeRe = regexp.MustCompile(`\b1[0-9]{9}\b`)
)

// mask replaces the values of one issuance (certificates, keys, serials,
// expirations, database user names and passwords) with their kind.
func mask(b []byte) string {
	s := pemRe.ReplaceAllString(string(b), "<$1>")
	s = dbUserRe.ReplaceAllString(s, "<username>")
	s = dbPassRe.ReplaceAllString(s, "<password>")
	s = serialRe.ReplaceAllString(s, "<serial>")
	return unixTimeRe.ReplaceAllString(s, "<time>")
}

// redact hides the planted values in a failure message.
func redact(s *stage, b []byte) string {
	out := string(b)
	for _, v := range s.values {
		out = strings.ReplaceAll(out, v, "<planted>")
	}
	return out
}

func (s *stage) leaks(log string) bool {
	return strings.Contains(log, "planted-"+s.w.ns)
}

// checkCertificates: every certificate in a Pod's files chains to its
// mount's CA, and a file (or the set of files) holding a private key holds
// the key of a certificate of the set.
func checkCertificates(t *testing.T, s *stage, name string, files map[string][]byte) {
	t.Helper()
	var certs, cas []*x509.Certificate
	var keys []any
	for _, f := range slices.Sorted(maps.Keys(files)) {
		rest := files[f]
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			switch blk.Type {
			case "CERTIFICATE":
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					t.Errorf("%s: %s: %v", name, f, err)
					continue
				}
				if c.IsCA {
					cas = append(cas, c)
				} else {
					certs = append(certs, c)
				}
			case "EC PRIVATE KEY":
				k, err := x509.ParseECPrivateKey(blk.Bytes)
				if err != nil {
					t.Errorf("%s: %s: %v", name, f, err)
					continue
				}
				keys = append(keys, k.Public())
			}
		}
	}
	// The CA the Pod was given (ca.crt) when it has one, else its mount's.
	roots := x509.NewCertPool()
	if len(cas) == 0 {
		cas = slices.Collect(maps.Values(s.cas))
	}
	for _, ca := range cas {
		if !slices.ContainsFunc(slices.Collect(maps.Values(s.cas)), ca.Equal) {
			t.Errorf("%s: a CA certificate of no mount of the run: %s", name, ca.Subject.CommonName)
		}
		roots.AddCert(ca)
	}
	for _, c := range certs {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: certificate %s does not chain to its CA: %v", name, c.Subject.CommonName, err)
		}
	}
	for _, k := range keys {
		if !slices.ContainsFunc(certs, func(c *x509.Certificate) bool {
			pk, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
			return ok && pk.Equal(k)
		}) {
			t.Errorf("%s: a private key belongs to none of the Pod's certificates", name)
		}
	}
	if len(keys) > 0 {
		t.Logf("%s: %d certificates, %d keys, each key of a certificate, each chained to its CA", name, len(certs), len(keys))
	}
}
