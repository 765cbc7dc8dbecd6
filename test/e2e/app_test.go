package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/test/stack"
)

const exampleImage = "localhost/ramvault-example-app:dev"

// appStatus is the part of the example app's GET /status the tests read
// (examples/app).
type appStatus struct {
	SignalReloads        int64  `json:"signal_reloads"`
	HTTPReloads          int64  `json:"http_reloads"`
	DBLoginsOK           int64  `json:"db_logins_ok"`
	DBLoginErrors        int64  `json:"db_login_errors"`
	LastDBError          string `json:"last_db_error"`
	DBConnected          bool   `json:"db_connected"`
	CredentialGeneration int    `json:"credential_generation"`
	UID                  int    `json:"uid"`
	Files                []struct {
		Name       string `json:"name"`
		Mode       string `json:"mode"`
		UID        int    `json:"uid"`
		Filesystem string `json:"filesystem"`
		Readable   bool   `json:"readable"`
	} `json:"files"`
}

// exampleApp is a Deployment of the example app reading a KV secret
// ("config") and PostgreSQL credentials ("db"), reloaded as reload says,
// beside a container not listed in ramvault.io/containers.
func (w *world) exampleApp(name, kvPath, dbPath, reload string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"ramvault.io/inject": "true", "ramvault.io/role": w.role,
					"ramvault.io/secret-config": kvPath, "ramvault.io/secret-db": dbPath,
					"ramvault.io/reload": reload, "ramvault.io/signal-process": "example-app",
					"ramvault.io/containers": "app"}},
				Spec: corev1.PodSpec{
					ServiceAccountName:            "app",
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](10001), RunAsNonRoot: ptr.To(true)},
					Containers: []corev1.Container{
						{Name: "app", Image: exampleImage, ImagePullPolicy: corev1.PullIfNotPresent,
							Env: []corev1.EnvVar{{Name: "PGHOST", Value: w.env.PodPGHost}, {Name: "PGPORT", Value: w.env.PodPGPort},
								{Name: "PGSSLMODE", Value: "disable"}}},
						// Not listed, and another UID: with the shared process
						// namespace of a signal reload, a container of the app's
						// UID could read the files through /proc, and the
						// injector denies it.
						{Name: "other", Image: stack.BusyboxImage, ImagePullPolicy: corev1.PullNever,
							SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](10002)},
							Command:         []string{"sh", "-c", "ls /var/run/secrets/ramvault 2>&1; sleep 3600"}},
					},
				},
			},
		},
	}
}

// status reads the example app's GET /status through the apiserver's Pod
// proxy (works on kind as on the local stack).
func (w *world) status(pod string) (appStatus, error) {
	var s appStatus
	b, err := w.cs.CoreV1().Pods(w.ns).ProxyGet("http", pod, "8080", "/status", nil).DoRaw(context.Background())
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// podOf is the running Pod of a Deployment.
func (w *world) podOf(name string) *corev1.Pod {
	w.t.Helper()
	var pod *corev1.Pod
	stack.WaitFor(w.t, 120*time.Second, "a ready Pod of "+name, func() bool {
		pods, err := w.cs.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false
		}
		for i := range pods.Items {
			if stack.PodRunningReady(&pods.Items[i]) {
				pod = &pods.Items[i]
				return true
			}
		}
		return false
	})
	return pod
}

// The example app in Deployments, with a KV v2 secret and short-lived
// PostgreSQL credentials (ttl 4s, max_ttl 10s): its files are on tmpfs, 0400,
// owned by its uid; a container not listed cannot see them; it logs in to
// PostgreSQL with them; when the agent re-issues the credentials the app is
// reloaded — by SIGHUP in one Deployment (shared process namespace), by
// POST /reload in the other — and logs in with the new ones.
func TestExampleAppLogsInToPostgresAndIsReloadedWithNewCredentials(t *testing.T) {
	w := newWorld(t, kvPolicy)
	ctx := context.Background()
	kv := w.kv()
	db := w.dbRole("4s", "10s")
	reloads := map[string]string{"by-signal": "signal:SIGHUP", "by-http": "http:http://127.0.0.1:8080/reload"}
	for name, reload := range reloads {
		if _, err := w.cs.AppsV1().Deployments(w.ns).Create(ctx, w.exampleApp(name, kv, db, reload), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name := range reloads {
		pod := w.podOf(name)
		if !injected(pod.Spec) {
			t.Fatalf("%s: the Pod was not injected", name)
		}
		if name == "by-signal" && (pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace) {
			t.Errorf("%s: reload by signal without a shared process namespace", name)
		}
		var first appStatus
		stack.WaitFor(t, 30*time.Second, name+": the app logged in to PostgreSQL", func() bool {
			s, err := w.status(pod.Name)
			first = s
			return err == nil && s.DBConnected && s.DBLoginsOK >= 1
		})
		if len(first.Files) != 2 {
			t.Errorf("%s: the app sees %d files, want config and db: %+v", name, len(first.Files), first.Files)
		}
		for _, f := range first.Files {
			if f.Filesystem != "tmpfs" || f.Mode != "0400" || f.UID != 10001 || !f.Readable {
				t.Errorf("%s: file %s is %+v; want on tmpfs, 0400, owned by 10001, readable", name, f.Name, f)
			}
		}
		if log := w.logs(pod.Name, "other"); !strings.Contains(log, "No such file or directory") {
			t.Errorf("%s: the container not listed sees the secrets:\n%s", name, log)
		}

		var s appStatus
		stack.WaitFor(t, 60*time.Second, name+": a reload with new credentials that log in", func() bool {
			var err error
			s, err = w.status(pod.Name)
			reloaded := s.SignalReloads
			if name == "by-http" {
				reloaded = s.HTTPReloads
			}
			return err == nil && reloaded >= 1 && s.CredentialGeneration >= 2 && s.DBConnected
		})
		t.Logf("%s: %d signal and %d HTTP reloads, %d credential generations, %d logins ok, %d failed",
			name, s.SignalReloads, s.HTTPReloads, s.CredentialGeneration, s.DBLoginsOK, s.DBLoginErrors)
		if name == "by-signal" && s.HTTPReloads != 0 || name == "by-http" && s.SignalReloads != 0 {
			t.Errorf("%s: reloaded the other way too: %+v", name, s)
		}
		p, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if cs.RestartCount != 0 {
				t.Errorf("%s: container %s restarted %d times", name, cs.Name, cs.RestartCount)
			}
		}
		for _, c := range []string{"app", "other", "ramvault-agent"} {
			if l := w.logs(pod.Name, c); strings.Contains(l, "planted-"+w.ns) {
				t.Errorf("%s: container %s logged the planted secret value", name, c)
			}
		}
	}
}
