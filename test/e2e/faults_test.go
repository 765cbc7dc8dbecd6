package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/test/faults"
	"github.com/ramvault/ramvault/test/stack"
)

// The agent's fault matrix (issue 12): real Pods whose agent reaches the
// stack's one, shared Vault through a fault proxy of their own (test/faults),
// which the test switches. Each test runs in parallel with the others and
// logs its measured figure as "fault: …".

// faultWorld is a world whose Pods talk to Vault through a proxy.
func faultWorld(t *testing.T) (*world, *faults.Proxy) {
	t.Helper()
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("the fault proxy listens on the local stack's pod bridge")
	}
	return w, faults.Start(t, stack.Gateway, w.env.PodVaultAddr)
}

// viaProxy is a Pod of the app spec whose agent uses the proxy.
func (w *world) viaProxy(name string, p *faults.Proxy, ann map[string]string, script string) *corev1.Pod {
	a := map[string]string{"ramvault.io/inject": "true", "ramvault.io/role": w.role, "ramvault.io/vault-addr": p.Addr()}
	for k, v := range ann {
		a[k] = v
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: a}, Spec: appSpec(script)}
}

// createViaProxy creates a Pod of viaProxy. The stack is shared: a test
// binary of another checkout deploys its own dev overlay, whose allowlist
// may lack the proxy ports (before they were added); then this checkout's
// overlay is deployed again and the create retried once.
func (w *world) createViaProxy(pod *corev1.Pod) *corev1.Pod {
	w.t.Helper()
	pod.Namespace = w.ns
	created, err := w.cs.CoreV1().Pods(w.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil && strings.Contains(err.Error(), "is not allowed by this injector") {
		w.t.Logf("the injector does not allow %s (another checkout's overlay?): deploying this one's", pod.Annotations["ramvault.io/vault-addr"])
		if err := stack.Deploy(context.Background(), w.env); err != nil {
			w.t.Fatal(err)
		}
		created, err = w.cs.CoreV1().Pods(w.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	}
	if err != nil {
		w.t.Fatalf("create: %v", err)
	}
	if !injected(created.Spec) {
		w.t.Fatalf("the in-cluster webhook did not inject Pod %s", pod.Name)
	}
	return created
}

// waitReady polls (every 100 ms) until the Pod is Running and Ready, and
// returns when it first saw that.
func (w *world) waitReady(name string, timeout time.Duration) time.Time {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && stack.PodRunningReady(p) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("pod %s not ready within %s:\n%s", name, timeout, stack.DescribePod(w.cs, w.ns, name, p))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) ready(name string) bool {
	p, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), name, metav1.GetOptions{})
	return err == nil && stack.PodRunningReady(p)
}

// after is the first request matching prefix that started after t and
// whose status satisfies ok.
func after(p *faults.Proxy, prefix string, t time.Time, ok func(int) bool) (faults.Request, bool) {
	for _, r := range p.Matching(prefix) {
		if r.Start.After(t) && ok(r.Status) {
			return r, true
		}
	}
	return faults.Request{}, false
}

func is2xx(c int) bool   { return c >= 200 && c < 300 }
func isError(c int) bool { return c >= 400 }

// secretsDir is the Pod's secrets volume as the node holds it.
func (w *world) secretsDir(uid string) string {
	return filepath.Join(w.env.StateDir, "kubelet", "pods", uid, "volumes", "kubernetes.io~empty-dir", injector.SecretsVolume)
}

// Vault down when the Pod starts: the app waits (the Pod is not Ready), and
// is Ready within 10 s of Vault's return.
func TestFaultVaultDownWhenThePodStarts(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	path := w.kv()
	if err := p.Set(faults.Mode{Kind: faults.Refuse}); err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{"ramvault.io/secret-kv": path}
	w.createViaProxy(w.viaProxy("waits", p, ann, "sleep 3600"))
	// Long enough that the uncapped backoff (250 ms doubling to 30 s)
	// would wait past 10 s after the return.
	time.Sleep(20 * time.Second)
	if w.ready("waits") {
		t.Fatal("the Pod is Ready while Vault is unreachable")
	}
	back := time.Now()
	if err := p.Set(faults.Mode{Kind: faults.Forward}); err != nil {
		t.Fatal(err)
	}
	d := w.waitReady("waits", 60*time.Second).Sub(back)
	t.Logf("fault: Vault down at the Pod's start for 20 s: Ready %v after its return", d.Round(time.Millisecond))
	if d > 10*time.Second {
		t.Errorf("Ready %v after Vault's return, want within 10 s", d)
	}
}

// Deleting a Pod that waits for a down Vault, in classic and init-only
// modes, with the default grace period (30 s): the Pod is gone within it.
func TestFaultDeletingAPodThatWaitsForVault(t *testing.T) {
	t.Parallel()
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("the fault proxy listens on the local stack's pod bridge")
	}
	path := w.kv()
	// Not native mode: its postStart hook holds the app until the secrets
	// are written, and the kubelet handles a deletion only once a running
	// postStart hook returns (it runs the hook inside the Pod's sync, under
	// a context a deletion does not cancel): such a Pod goes when the hook
	// gives up, after 2 min (measured 1 min 55 s). Bounding the hook and
	// holding the app with a startup probe instead made every native Pod
	// 1.7 s slower to become Ready, so that was not kept (docs/operations.md).
	modes := []string{"classic", "init-only"}
	for _, mode := range modes {
		p := faults.Start(t, stack.Gateway, w.env.PodVaultAddr)
		if err := p.Set(faults.Mode{Kind: faults.Refuse}); err != nil {
			t.Fatal(err)
		}
		pod := w.viaProxy(mode, p, map[string]string{"ramvault.io/secret-kv": path, "ramvault.io/mode": mode}, "sleep 3600")
		pod.Spec.TerminationGracePeriodSeconds = nil // the default, 30 s
		w.createViaProxy(pod)
	}
	// Well into the init container's wait for Vault.
	time.Sleep(8 * time.Second)
	ctx := context.Background()
	deleted := map[string]time.Time{}
	for _, mode := range modes {
		pod, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, mode, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == "app" && s.State.Waiting == nil {
				t.Errorf("%s: the app container started while Vault is unreachable (%+v)", mode, s.State)
			}
		}
		if err := w.cs.CoreV1().Pods(w.ns).Delete(ctx, mode, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted[mode] = time.Now()
	}
	gone := map[string]time.Duration{}
	stack.WaitFor(t, 3*time.Minute, "every Pod to be gone", func() bool {
		for _, mode := range modes {
			if _, ok := gone[mode]; ok {
				continue
			}
			if _, err := w.cs.CoreV1().Pods(w.ns).Get(ctx, mode, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				gone[mode] = time.Since(deleted[mode])
			}
		}
		return len(gone) == len(modes)
	})
	for _, mode := range modes {
		t.Logf("fault: Vault down, %s Pod deleted 8 s after its creation: gone %v after the delete (grace 30 s)", mode, gone[mode].Round(time.Millisecond))
		if gone[mode] > 30*time.Second {
			t.Errorf("%s: the Pod was gone %v after the delete, past its 30 s grace period", mode, gone[mode])
		}
	}
}

// Vault down mid-life for longer than the database lease: the files stay
// throughout, the app is not restarted, the lease (ended meanwhile) is
// re-issued on Vault's return, and the app is reloaded once.
func TestFaultVaultDownMidLife(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	db := w.dbRole("12s", "10m")
	const script = `trap 'echo RELOADED' HUP
D=/var/run/secrets/ramvault
while true; do
  test -s $D/db && test -s $D/kv || echo MISSING
  sleep 0.2
done`
	w.createViaProxy(w.viaProxy("midlife", p, map[string]string{"ramvault.io/secret-db": db, "ramvault.io/secret-kv": w.kv(),
		"ramvault.io/reload": "signal:SIGHUP"}, script))
	w.waitReady("midlife", 90*time.Second)
	// Let one renewal happen first, then cut Vault off past the lease's end.
	stack.WaitFor(t, 30*time.Second, "a first lease renewal", func() bool { return len(p.Matching("sys/leases/renew")) > 0 })
	reloadsBefore := strings.Count(w.logsSoFar("midlife", "app"), "RELOADED")
	if err := p.Set(faults.Mode{Kind: faults.Refuse}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	back := time.Now()
	if err := p.Set(faults.Mode{Kind: faults.Forward}); err != nil {
		t.Fatal(err)
	}
	var issued faults.Request
	stack.WaitFor(t, 40*time.Second, "the database lease to be re-issued after Vault's return", func() bool {
		var ok bool
		issued, ok = after(p, db, back, is2xx)
		return ok
	})
	t.Logf("fault: Vault down 20 s (lease 12 s): database credentials re-issued %v after its return", issued.End.Sub(back).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // the write and the reload after it
	log := w.logsSoFar("midlife", "app")
	if strings.Contains(log, "MISSING") {
		t.Error("a secret file was missing or empty during the outage")
	}
	if n := strings.Count(log, "RELOADED") - reloadsBefore; n != 1 {
		t.Errorf("the app was reloaded %d times after the outage, want once", n)
	}
	w.noRestarts("midlife")
}

// noRestarts fails the test for every container of the Pod that the
// kubelet restarted.
func (w *world) noRestarts(name string) {
	w.t.Helper()
	pod, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, s := range append(pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses...) {
		if s.RestartCount != 0 {
			w.t.Errorf("container %s was restarted %d times", s.Name, s.RestartCount)
		}
	}
}

// Vault down mid-life over a renewal point, shorter than what is left of
// the lease: the renewal fails and is retried with backoff; on Vault's
// return the same lease is renewed: the same credentials (the file is not
// rewritten), a later expiry in Vault, no reload, no restart.
func TestFaultVaultDownOverARenewalWithinTheLease(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	// Renewed at ~2/3 of 30 s (18–20 s in), ends at 30 s; the last renewal
	// attempt is at 27 s (the margin is a tenth of the lease).
	db := w.dbRole("30s", "10m")
	const script = `trap 'echo RELOADED' HUP
while true; do sleep 0.2; done`
	pod := w.createViaProxy(w.viaProxy("renews", p, map[string]string{"ramvault.io/secret-db": db, "ramvault.io/reload": "signal:SIGHUP"}, script))
	w.waitReady("renews", 90*time.Second)
	// From a renewal on, the schedule is known: the next is 18–20 s later.
	var first faults.Request
	stack.WaitFor(t, 40*time.Second, "a first lease renewal", func() bool {
		var ok bool
		first, ok = after(p, "sys/leases/renew", time.Time{}, is2xx)
		return ok
	})
	file := filepath.Join(w.secretsDir(string(pod.UID)), "db")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var creds struct {
		Username string `json:"username"`
	}
	if err := json.Unmarshal(before, &creds); err != nil || creds.Username == "" {
		t.Fatalf("the db file holds no username (%v)", err)
	}
	id, expires := w.lease(db)
	reloadsBefore := strings.Count(w.logsSoFar("renews", "app"), "RELOADED")
	renewalsBefore := len(p.Matching("sys/leases/renew"))

	time.Sleep(time.Until(first.End.Add(12 * time.Second)))
	if err := p.Set(faults.Mode{Kind: faults.Refuse}); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// Back 2 s before the last attempt: a renewal that gave up when its next
	// backoff would pass the lease's end (as it did) has given up by then.
	time.Sleep(time.Until(first.End.Add(25 * time.Second)))
	if len(p.Matching("sys/leases/renew")) != renewalsBefore {
		t.Fatal("a renewal went through before the outage began: the schedule is not the one assumed")
	}
	back := time.Now()
	if err := p.Set(faults.Mode{Kind: faults.Forward}); err != nil {
		t.Fatal(err)
	}
	var renewed faults.Request
	stack.WaitFor(t, 20*time.Second, "the lease renewed after Vault's return", func() bool {
		var ok bool
		renewed, ok = after(p, "sys/leases/renew", back, is2xx)
		return ok
	})
	attempts := 0
	for _, l := range strings.Split(w.logsSoFar("renews", "ramvault-agent"), "\n") {
		if strings.Contains(l, "retrying") && strings.Contains(l, `"renew db"`) {
			attempts++
		}
	}
	t.Logf("fault: Vault down %v over a renewal point (lease 30 s): %d failed renewal attempts, the same lease renewed %v after its return",
		back.Sub(down).Round(time.Second), attempts, renewed.End.Sub(back).Round(time.Millisecond))
	if attempts < 2 {
		t.Errorf("%d failed renewal attempts logged during the outage; want it retried", attempts)
	}
	if r, ok := after(p, db, down, func(int) bool { return true }); ok {
		t.Errorf("the credentials were fetched anew (%s at %v): want the lease renewed", r.Path, r.Start.Sub(down).Round(time.Millisecond))
	}
	if id2, expires2 := w.lease(db); id2 != id || !expires2.After(expires) {
		t.Errorf("Vault's lease %s expires %v; before the outage %s expired %v: want the same lease, renewed", id2, expires2, id, expires)
	}
	time.Sleep(2 * time.Second) // a reload would follow a write at once
	if after, err := os.ReadFile(file); err != nil || string(after) != string(before) {
		t.Errorf("the db file changed (%v)", err)
	}
	if n := strings.Count(w.logsSoFar("renews", "app"), "RELOADED") - reloadsBefore; n != 0 {
		t.Errorf("the app was reloaded %d times, want 0", n)
	}
	w.noRestarts("renews")
}

// lease is the one lease of the Pod under the database role at path, and
// when Vault says it expires.
func (w *world) lease(path string) (string, time.Time) {
	w.t.Helper()
	l, err := w.vc.Logical().List("sys/leases/lookup/" + path)
	if err != nil || l == nil {
		w.t.Fatalf("the Pod's lease: %v %v", l, err)
	}
	keys, _ := l.Data["keys"].([]any)
	if len(keys) != 1 {
		w.t.Fatalf("%d leases, want 1", len(keys))
	}
	id := path + "/" + fmt.Sprint(keys[0])
	info, err := w.vc.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": id})
	if err != nil || info == nil {
		w.t.Fatalf("look up lease: %v", err)
	}
	expires, err := time.Parse(time.RFC3339Nano, fmt.Sprint(info.Data["expire_time"]))
	if err != nil {
		w.t.Fatalf("lease expire_time %v: %v", info.Data["expire_time"], err)
	}
	return id, expires
}

// Vault answering 500, 503 and 429 with Retry-After: the agent backs off
// with full jitter up to the first write's cap (5 s), and never comes back
// before a Retry-After.
func TestFaultVaultErrorsAreBackedOffWithJitterAndCap(t *testing.T) {
	t.Parallel()
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("the fault proxy listens on the local stack's pod bridge")
	}
	path := w.kv()
	cases := []struct {
		name       string
		code       int
		retryAfter string
	}{{"e500", 500, ""}, {"e503", 503, ""}, {"e429", 429, "2"}}
	proxies := map[string]*faults.Proxy{}
	for _, c := range cases {
		p := faults.Start(t, stack.Gateway, w.env.PodVaultAddr)
		proxies[c.name] = p
		if err := p.Set(faults.Mode{Kind: faults.Status, Code: c.code, RetryAfter: c.retryAfter}); err != nil {
			t.Fatal(err)
		}
		w.createViaProxy(w.viaProxy(c.name, p, map[string]string{"ramvault.io/secret-kv": path}, "sleep 3600"))
	}
	time.Sleep(25 * time.Second)
	back := time.Now()
	for _, c := range cases {
		if err := proxies[c.name].Set(faults.Mode{Kind: faults.Forward}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		logins := proxies[c.name].Matching("auth/kubernetes/login")
		var gaps []time.Duration
		for i := 1; i < len(logins); i++ {
			if logins[i].Start.After(back) {
				break
			}
			gaps = append(gaps, logins[i].Start.Sub(logins[i-1].End))
		}
		t.Logf("fault: %d for 25 s: %d login attempts, waits %v", c.code, len(gaps)+1, roundAll(gaps))
		if len(gaps) < 3 {
			t.Errorf("%d: %d attempts in 25 s, want several", c.code, len(gaps)+1)
			continue
		}
		backoff := 250 * time.Millisecond
		jittered := 0
		for i, g := range gaps {
			limit := backoff
			if c.retryAfter != "" {
				limit = max(limit, 2*time.Second)
				if g < 2*time.Second-50*time.Millisecond {
					t.Errorf("%d: wait %d was %v, before the Retry-After of 2 s", c.code, i+1, g)
				}
			}
			// 2 s of slack: on the 2-core machine the tests share, a
			// process can wait that long to be scheduled.
			if g > limit+2*time.Second {
				t.Errorf("%d: wait %d was %v, past its backoff %v (cap 5 s)", c.code, i+1, g, limit)
			}
			if g < backoff*8/10 {
				jittered++
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		if c.retryAfter == "" && jittered == 0 {
			t.Errorf("%d: waits %v, none under 80%% of its backoff: no full jitter", c.code, gaps)
		}
	}
	for _, c := range cases {
		d := w.waitReady(c.name, 30*time.Second).Sub(back)
		t.Logf("fault: after %d for 25 s, Ready %v after Vault answered again", c.code, d.Round(time.Millisecond))
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// The Pod's Vault token revoked from outside (with it, Vault revokes its
// leases): at the next call that meets the revocation the agent logs in
// again and re-issues the database credentials within 5 s; Vault holds one
// token for the Pod afterwards. (The old credentials cannot be kept for a
// grace period here: Vault ended them with the token.)
func TestFaultTokenRevokedFromOutside(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	db := w.dbRole("10s", "10m")
	w.createViaProxy(w.viaProxy("revoked", p, map[string]string{"ramvault.io/secret-db": db}, "sleep 3600"))
	w.waitReady("revoked", 90*time.Second)
	accessors := w.podTokens()
	if len(accessors) != 1 {
		t.Fatalf("%d tokens for the Pod, want 1", len(accessors))
	}
	revokedAt := time.Now()
	if _, err := w.vc.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": accessors[0]}); err != nil {
		t.Fatal(err)
	}
	var denied, login, issued faults.Request
	stack.WaitFor(t, 30*time.Second, "the agent to meet the revocation, log in and re-issue", func() bool {
		var ok bool
		if denied, ok = after(p, "", revokedAt, func(c int) bool { return c == 403 }); !ok {
			return false
		}
		if login, ok = after(p, "auth/kubernetes/login", denied.Start, is2xx); !ok {
			return false
		}
		issued, ok = after(p, db, login.End, is2xx)
		return ok
	})
	d := issued.End.Sub(denied.Start)
	t.Logf("fault: token revoked from outside: first 403 %v after the revocation (%s), new login and credentials %v after it",
		denied.Start.Sub(revokedAt).Round(time.Millisecond), denied.Path, d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("new login and re-issue took %v after the first denied call, want within 5 s", d)
	}
	stack.WaitFor(t, 10*time.Second, "one token for the Pod", func() bool {
		a := w.podTokens()
		return len(a) == 1 && a[0] != accessors[0]
	})
}

// A database lease revoked from outside: at its next renewal the agent
// fetches new credentials, within 5 s.
func TestFaultDatabaseLeaseRevokedFromOutside(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	db := w.dbRole("10s", "10m")
	w.createViaProxy(w.viaProxy("lease", p, map[string]string{"ramvault.io/secret-db": db}, "sleep 3600"))
	w.waitReady("lease", 90*time.Second)
	l, err := w.vc.Logical().List("sys/leases/lookup/" + db)
	if err != nil || l == nil {
		t.Fatalf("the Pod's lease: %v %v", l, err)
	}
	keys, _ := l.Data["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("%d leases, want 1", len(keys))
	}
	revokedAt := time.Now()
	if _, err := w.vc.Logical().Write("sys/leases/revoke", map[string]any{"lease_id": db + "/" + fmt.Sprint(keys[0])}); err != nil {
		t.Fatal(err)
	}
	var refused, issued faults.Request
	stack.WaitFor(t, 30*time.Second, "the refused renewal and new credentials", func() bool {
		var ok bool
		if refused, ok = after(p, "sys/leases/renew", revokedAt, isError); !ok {
			return false
		}
		issued, ok = after(p, db, refused.Start, is2xx)
		return ok
	})
	d := issued.End.Sub(refused.Start)
	t.Logf("fault: lease revoked from outside: renewal refused (%d) %v after, new credentials %v after that",
		refused.Status, refused.Start.Sub(revokedAt).Round(time.Millisecond), d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("re-issued %v after the refused renewal, want within 5 s", d)
	}
}

// The agent SIGKILLed while it stages a new file: the restarted agent
// leaves no temporary file, the file is whole, and it keeps the Pod's token.
func TestFaultAgentKilledMidWrite(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	ctx := context.Background()
	// 2 MiB in four keys (Vault takes no JSON string over 1 MiB).
	big := func(gen int) map[string]any {
		m := map[string]any{}
		for _, k := range []string{"a", "b", "c", "d"} {
			m[k] = strings.Repeat(fmt.Sprintf("%08d", gen), 512<<10/8)
		}
		return m
	}
	if _, err := w.vc.KVv2("secret").Put(ctx, "e2e/"+w.ns, big(0)); err != nil {
		t.Fatal(err)
	}
	pod := w.createViaProxy(w.viaProxy("killed", p, map[string]string{"ramvault.io/secret-kv": "secret/data/e2e/" + w.ns,
		"ramvault.io/refresh-kv": "1s", "ramvault.io/volume-size": "16Mi"}, "sleep 3600"))
	w.waitReady("killed", 90*time.Second)
	accessors := w.podTokens()
	dir := w.secretsDir(string(pod.UID))
	// New versions keep coming; the moment a temporary file is there, the
	// agent is staging: kill it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for gen := 1; ; gen++ {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			_, _ = w.vc.KVv2("secret").Put(ctx, "e2e/"+w.ns, big(gen))
		}
	}()
	// A kill that lands while the agent is in the rename that puts the
	// staged file in place still lets that rename finish: then there is no
	// temporary file left to find, and the test kills the restarted agent
	// again (at most 5 times).
	var temp string
	for attempt := 1; ; attempt++ {
		pid := agentPID(t, string(pod.UID))
		temp = ""
		for deadline := time.Now().Add(30 * time.Second); temp == "" && time.Now().Before(deadline); {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".kv.tmp-") {
					temp = e.Name()
				}
			}
		}
		if temp == "" {
			t.Fatal("never saw the agent stage a file in 30 s")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		stack.WaitFor(t, 10*time.Second, "the killed agent to be gone", func() bool {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err != nil || strings.Contains(string(b), ") Z ")
		})
		if _, err := os.Stat(filepath.Join(dir, temp)); err == nil {
			break
		}
		if attempt == 5 {
			t.Fatalf("killed the agent 5 times while it staged a file, and each time the rename had finished")
		}
		t.Logf("attempt %d: the kill landed after %s was renamed into place; again", attempt, temp)
		stack.WaitFor(t, 60*time.Second, "the restarted agent", func() bool {
			p := findAgentPID(string(pod.UID))
			return p != 0 && p != pid
		})
	}
	killedAt := time.Now()
	stack.WaitFor(t, 60*time.Second, "the restarted agent to remove the temporary file", func() bool {
		_, err := os.Stat(filepath.Join(dir, temp))
		return os.IsNotExist(err)
	})
	t.Logf("fault: agent SIGKILLed while staging %s; the restarted agent removed it %v later", temp, time.Since(killedAt).Round(time.Millisecond))
	w.waitReady("killed", 60*time.Second)
	b, err := os.ReadFile(filepath.Join(dir, "kv"))
	var got map[string]string
	if err != nil || json.Unmarshal(b, &got) != nil || len(got) != 4 || got["a"] != got["b"] || got["a"] != got["c"] || got["a"] != got["d"] ||
		len(got["a"]) != 512<<10 || strings.Count(got["a"], got["a"][:8]) != 512<<10/8 {
		t.Errorf("the file after the kill is not one whole version (%d bytes, %v)", len(b), err)
	}
	if a := w.podTokens(); len(a) != 1 || a[0] != accessors[0] {
		t.Errorf("tokens before the kill %v, after %v: want the same one", accessors, a)
	}
	if log := nodeLog(t, w.env, w.ns, "killed", "ramvault-agent"); !strings.Contains(log, "removed temporary files") {
		t.Errorf("the restarted agent did not say it removed the temporary file")
	}
}

// The secrets tmpfs full: the old file stays, /status, the status file and
// the metrics say so, and the log has one clear line.
func TestFaultSecretsVolumeFull(t *testing.T) {
	t.Parallel()
	w, p := faultWorld(t)
	ctx := context.Background()
	path := w.kv()
	pod := w.createViaProxy(w.viaProxy("full", p, map[string]string{"ramvault.io/secret-kv": path, "ramvault.io/key-kv": "password",
		"ramvault.io/refresh-kv": "1s", "ramvault.io/volume-size": "64Ki"}, "sleep 3600"))
	w.waitReady("full", 90*time.Second)
	if _, err := w.vc.KVv2("secret").Put(ctx, "e2e/"+w.ns, map[string]any{"password": strings.Repeat("x", 100<<10)}); err != nil {
		t.Fatal(err)
	}
	var log string
	stack.WaitFor(t, 30*time.Second, "the agent to say the volume is full", func() bool {
		log = w.logsSoFar("full", "ramvault-agent")
		return strings.Contains(log, "no space left on the secrets volume")
	})
	dir := w.secretsDir(string(pod.UID))
	if b, err := os.ReadFile(filepath.Join(dir, "kv")); err != nil || string(b) != "planted-"+w.ns {
		t.Errorf("the file is not the previous one (%d bytes, %v)", len(b), err)
	}
	var status struct {
		Degraded bool `json:"degraded"`
		Secrets  map[string]struct {
			LastError *struct{ Error string } `json:"last_error"`
		} `json:"secrets"`
	}
	b, err := w.cs.CoreV1().Pods(w.ns).ProxyGet("http", "full", "8099", "/status", nil).DoRaw(ctx)
	if err != nil || json.Unmarshal(b, &status) != nil {
		t.Fatalf("GET :8099/status: %v\n%s", err, b)
	}
	if e := status.Secrets["kv"].LastError; e == nil || !strings.Contains(e.Error, "no space left") {
		t.Errorf("/status does not say the volume is full:\n%s", b)
	}
	sf, err := os.ReadFile(filepath.Join(dir, ".ramvault-status.json"))
	if err != nil || !strings.Contains(string(sf), `"degraded": true`) {
		t.Errorf("the status file does not say degraded (%v):\n%s", err, sf)
	}
	m, err := w.cs.CoreV1().Pods(w.ns).ProxyGet("http", "full", "9102", "/metrics", nil).DoRaw(ctx)
	if err != nil || !strings.Contains(string(m), "ramvault_agent_degraded 1") {
		t.Errorf("the metrics do not say degraded (%v):\n%s", err, m)
	}
	line := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "no space left") {
			line = l
			break
		}
	}
	t.Logf("fault: tmpfs full: log line %s", line)
}

// A slow or hanging Vault at shutdown: a hanging lease revocation does not
// keep the token from being revoked within the shutdown grace, and the log
// says which were revoked; with everything hanging, it says the token was
// not.
func TestFaultHangingVaultAtShutdown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, kvPolicy)
	if w.env.External() {
		t.Skip("the fault proxy listens on the local stack's pod bridge")
	}
	db := w.dbRole("2m", "10m")
	cases := []struct {
		name      string
		mode      faults.Mode
		wantToken bool
	}{
		{"lease-hangs", faults.Mode{Kind: faults.Hang, Paths: []string{"sys/leases/revoke"}}, true},
		{"slow", faults.Mode{Kind: faults.Slow, Delay: 1500 * time.Millisecond}, true},
		{"all-hang", faults.Mode{Kind: faults.Hang}, false},
	}
	proxies := map[string]*faults.Proxy{}
	for _, c := range cases {
		p := faults.Start(t, stack.Gateway, w.env.PodVaultAddr)
		proxies[c.name] = p
		// The app stops at once on SIGTERM, so the agent gets its grace.
		pod := w.viaProxy(c.name, p, map[string]string{"ramvault.io/secret-db": db}, "trap 'exit 0' TERM; while true; do sleep 1; done")
		pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](20)
		w.createViaProxy(pod)
	}
	for _, c := range cases {
		w.waitReady(c.name, 90*time.Second)
	}
	before := w.podTokens()
	for _, c := range cases {
		if err := proxies[c.name].Set(c.mode); err != nil {
			t.Fatal(err)
		}
		if err := w.cs.CoreV1().Pods(w.ns).Delete(context.Background(), c.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The kubelet removes a Pod's logs once it is gone: read them while
	// it terminates.
	lines := map[string]string{}
	stack.WaitFor(t, 60*time.Second, "every agent's shutdown line", func() bool {
		for _, c := range cases {
			if lines[c.name] != "" {
				continue
			}
			for _, l := range strings.Split(nodeLog(t, w.env, w.ns, c.name, "ramvault-agent"), "\n") {
				if strings.Contains(l, "shut down:") {
					lines[c.name] = l
				}
			}
		}
		return len(lines) == len(cases)
	})
	for _, c := range cases {
		stack.WaitFor(t, 60*time.Second, c.name+" to be gone", func() bool {
			_, err := w.cs.CoreV1().Pods(w.ns).Get(context.Background(), c.name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		line := lines[c.name]
		t.Logf("fault: %s at shutdown: %s", c.name, line)
		var rec struct {
			Msg          string   `json:"msg"`
			TokenRevoked bool     `json:"token_revoked"`
			Revoked      []string `json:"leases_revoked"`
			NotRevoked   []string `json:"leases_not_revoked"`
			Took         string   `json:"took"`
		}
		if i := strings.Index(line, "{"); i < 0 || json.Unmarshal([]byte(line[i:]), &rec) != nil {
			t.Errorf("%s: no shutdown line in the agent's log", c.name)
			continue
		}
		if rec.TokenRevoked != c.wantToken {
			t.Errorf("%s: token_revoked %v, want %v", c.name, rec.TokenRevoked, c.wantToken)
		}
		if took, err := time.ParseDuration(rec.Took); err != nil || took > 10*time.Second+500*time.Millisecond {
			t.Errorf("%s: shutdown took %q, past the 10 s grace", c.name, rec.Took)
		}
		switch c.name {
		case "lease-hangs", "all-hang":
			if strings.Join(rec.NotRevoked, ",") != "db" || len(rec.Revoked) != 0 {
				t.Errorf("%s: leases revoked %v, not revoked %v; want db not revoked", c.name, rec.Revoked, rec.NotRevoked)
			}
		case "slow":
			if strings.Join(rec.Revoked, ",") != "db" {
				t.Errorf("%s: leases revoked %v, want db", c.name, rec.Revoked)
			}
		}
	}
	// Two of the three tokens were revoked; the all-hang Pod's is left to its TTL.
	left := w.podTokens()
	if len(before) != 3 || len(left) != 1 {
		t.Errorf("tokens before the deletes %d, after %d; want 3 and 1", len(before), len(left))
	}
	for _, a := range left {
		_, _ = w.vc.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": a})
	}
}
