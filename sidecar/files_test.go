package sidecar

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
	"github.com/ramvault/ramvault/pkg/tmpfs"
)

// filesPod has a file in a subdirectory of the Pod's mount path and one on
// another mount path (the volume's .ramvault-mounts/0), both leased.
var filesPod = map[string]string{
	dbSecret:                     "database/creds/app",
	"ramvault.io/file-name-db":   "conf/db/creds.json",
	"ramvault.io/secret-tls":     "database/creds/tls",
	"ramvault.io/mount-path-tls": "/etc/app/tls",
	"ramvault.io/file-name-tls":  "pair/tls.json",
}

// Each file is written at its volume path; the directory of the other mount
// path is made before anything is written (the kubelet bind-mounts it into
// the app containers, which start after the first write), and the files of
// one change are one set.
func TestFilesGoToTheirVolumePathsAndTheMountDirectoryComesFirst(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, filesPod)
	ta.vault.tokenTTL = 48 * time.Hour
	var sets [][]string
	ta.files.failSet = func(fs []tmpfs.File) error {
		if ta.files.dirs[".ramvault-mounts/0"] != 1 {
			t.Errorf("a set was written before the mount directory was made (dirs %v)", ta.files.dirs)
		}
		var names []string
		for _, f := range fs {
			names = append(names, f.Name)
		}
		slices.Sort(names)
		sets = append(sets, names)
		return nil
	}
	ta.start(t)
	for _, p := range []string{"conf/db/creds.json", ".ramvault-mounts/0/pair/tls.json"} {
		if !ta.files.Exists(p) {
			t.Errorf("no file at %s; files %v", p, ta.files.files)
		}
	}
	if ta.files.Exists("db") || ta.files.Exists("tls") {
		t.Error("a file was written under its name, not its file-name")
	}
	want := []string{".ramvault-mounts/0/pair/tls.json", "conf/db/creds.json"}
	if len(sets) != 1 || !slices.Equal(sets[0], want) {
		t.Errorf("first write's sets %v, want one set %v", sets, want)
	}
	// A restarted sidecar finds them there and keeps their leases.
	if !ta.stillValid(ta.graph.deps[0]) {
		t.Error("a lease with its file at its volume path is not still valid")
	}
}

// The same Pod through the real writer on a tmpfs: the files land in their
// directories, 0400, the directories 0700, and the mount directory is the
// same inode after a restart of the agent (a bind mount's source is never
// replaced).
func TestFilesInSubdirectoriesOnARealTmpfs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root (the test stack and CI run as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	w, err := tmpfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{"ramvault.io/inject-token": "true"}
	for k, v := range filesPod {
		ann[k] = v
	}
	ta := newTestAgent(t, modeInit, ann)
	ta.agent.files = w
	if err := ta.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	mountDir := filepath.Join(dir, spec.MountDirPrefix, "0")
	before, err := os.Stat(mountDir)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{
		"conf/db/creds.json": 0o400, ".ramvault-mounts/0/pair/tls.json": 0o400, spec.TokenFile: 0o400,
		"conf": 0o700 | os.ModeDir, "conf/db": 0o700 | os.ModeDir, ".ramvault-mounts/0/pair": 0o700 | os.ModeDir, ".ramvault-mounts/0": 0o700 | os.ModeDir,
	} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, spec.TokenFile)); string(b) != "s.token-1" {
		t.Errorf("token file %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*/*/.*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	ta2 := newTestAgent(t, modeInit, ann)
	ta2.agent.files = w
	if err := ta2.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(mountDir); err != nil || !os.SameFile(before, after) {
		t.Error("a second agent replaced the mount directory")
	}
}

// With inject-token the agent's Vault token is written to the file token
// beside the secrets, and rewritten by a new login; never logged (the test
// agent scans its log for tokens when the test ends).
func TestTheTokenFileIsRewrittenAfterANewLogin(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app", "ramvault.io/inject-token": "true"})
	ta.vault.tokenTTL = time.Hour
	ta.vault.leaseTTL, ta.vault.leaseMax = 24*time.Hour, 48*time.Hour
	ta.vault.fail = func(call string) error {
		if call == "renew-self" {
			return denial()
		}
		return nil
	}
	ta.start(t)
	if got := ta.files.content(spec.TokenFile); got != "s.token-1" {
		t.Fatalf("token file %q after the first login, want s.token-1", got)
	}
	ta.step(t) // renewal refused: a new login
	if n := ta.vault.count("login"); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
	if got := ta.files.content(spec.TokenFile); got != "s.token-2" {
		t.Errorf("token file %q after the new login, want s.token-2", got)
	}

	// A token revoked from outside: the next call is denied, the agent
	// logs in again at once, and the file follows.
	ta.vault.mu.Lock()
	ta.vault.fail = nil
	ta.vault.revoke(ta.vault.token)
	ta.vault.mu.Unlock()
	if _, err := ta.fetch(t.Context(), ta.graph.deps[0]); err == nil {
		t.Fatal("a fetch with a revoked token succeeded")
	}
	if got := ta.files.content(spec.TokenFile); got != "s.token-3" {
		t.Errorf("token file %q after a login for a revoked token, want s.token-3", got)
	}
}

// Without inject-token there is no token file.
func TestNoTokenFileWithoutInjectToken(t *testing.T) {
	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.start(t)
	if ta.files.Exists(spec.TokenFile) {
		t.Error("a token file without inject-token")
	}
}
