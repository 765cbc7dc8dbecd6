package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ramvault/ramvault/test/stack"
)

// file-name-<name> with subdirectories, mount-path-<name> (the volume's
// .ramvault-mounts/0, a subPath the agent made before the app started) and
// inject-token, through the real kubelet: each file is where the annotations
// say, 0400 and the app's, the directories 0700 and the app's (not the
// kubelet's root:root 0777 of a missing subPath), the value right, and no
// value in any log.
func TestFileNameAndMountPathReachTheApp(t *testing.T) {
	w := newWorld(t, kvPolicy)
	path := w.kv()
	const root = "/var/run/secrets/ramvault"
	const script = `for f in ` + root + `/conf/db/password /etc/app/tls/pair/pw ` + root + `/token; do stat -c 'file %a %u %n' $f; done
stat -c 'dir %a %u %n' ` + root + `/conf ` + root + `/conf/db /etc/app/tls /etc/app/tls/pair
echo "pwsha=$(sha256sum /etc/app/tls/pair/pw | cut -d' ' -f1) dbsha=$(sha256sum ` + root + `/conf/db/password | cut -d' ' -f1)"
echo files-checked; sleep 3600`
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/inject-token": "true",
		"ramvault.io/secret-db": path, "ramvault.io/key-db": "password", "ramvault.io/file-name-db": "conf/db/password",
		"ramvault.io/secret-pw": path, "ramvault.io/key-pw": "password", "ramvault.io/file-name-pw": "pair/pw",
		"ramvault.io/mount-path-pw": "/etc/app/tls"}},
		Spec: appSpec(script)}
	w.create(pod)
	stack.WaitPod(t, w.cs, w.ns, "app", 90*time.Second, stack.PodRunningReady)
	stack.WaitFor(t, 20*time.Second, "the app to check its files", func() bool { return strings.Contains(w.logs("app", "app"), "files-checked") })
	logs := w.logs("app", "app")
	for _, want := range []string{
		"file 400 1000 " + root + "/conf/db/password", "file 400 1000 /etc/app/tls/pair/pw", "file 400 1000 " + root + "/token",
		"dir 700 1000 " + root + "/conf", "dir 700 1000 " + root + "/conf/db", "dir 700 1000 /etc/app/tls", "dir 700 1000 /etc/app/tls/pair",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the app did not see %q; it saw:\n%s", want, logs)
		}
	}
	s := sha256.Sum256([]byte("planted-" + w.ns))
	sha := hex.EncodeToString(s[:])
	if !strings.Contains(logs, "pwsha="+sha) || !strings.Contains(logs, "dbsha="+sha) {
		t.Errorf("a file does not hold the planted value:\n%s", logs)
	}
	for _, c := range []string{"app", "ramvault-agent"} {
		if l := w.logs("app", c); strings.Contains(l, "planted-"+w.ns) || strings.Contains(l, "hvs.") {
			t.Errorf("container %s logged a planted value or a token", c)
		}
	}
}
