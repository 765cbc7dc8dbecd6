package tmpfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// memDir mounts a tmpfs of the given size (root only; the test stack and CI
// run as root) and unmounts it when the test ends.
func memDir(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func TestADiskDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if int64(st.Type) == tmpfsMagic {
		t.Fatalf("%s is itself on tmpfs; cannot test the refusal here", dir)
	}
	_, err := New(dir)
	if !errors.Is(err, ErrNotMemory) || !strings.Contains(err.Error(), "medium: Memory") {
		t.Fatalf("New(disk dir) = %v; want ErrNotMemory saying what to change", err)
	}
}

func TestWritesAreOwnerOnlyAndUnchangedContentIsNotRewritten(t *testing.T) {
	w, err := New(memDir(t, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := w.Write("db", []byte("v1"), 0o400)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	fi, _ := os.Stat(filepath.Join(w.Dir(), "db"))
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("mode %v, want 0400", fi.Mode().Perm())
	}
	changed, err = w.Write("db", []byte("v1"), 0o400)
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v; want no rewrite", changed, err)
	}
	after, _ := os.Stat(filepath.Join(w.Dir(), "db"))
	if !os.SameFile(fi, after) {
		t.Error("the file was replaced although its content did not change")
	}
	if _, err := w.Write("../x", []byte("v"), 0o400); err == nil {
		t.Error("a name with a slash was accepted")
	}
}

// Readers in a tight loop never see a partial or empty file across 1,000
// rotations.
func TestReadersNeverSeeAPartialFileAcross1000Rotations(t *testing.T) {
	w, err := New(memDir(t, "4m"))
	if err != nil {
		t.Fatal(err)
	}
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 64*1024) }
	if _, err := w.Write("s", content(0), 0o600); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad, reads atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(w.Dir(), "s"))
				reads.Add(1)
				if err != nil || len(b) != 64*1024 || bytes.Count(b, b[:1]) != len(b) {
					bad.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 1000; i++ {
		if _, err := w.Write("s", content(i), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d of %d reads saw a partial, mixed or missing file", bad.Load(), reads.Load())
	}
	left, _ := filepath.Glob(filepath.Join(w.Dir(), ".s.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestAFullTmpfsKeepsThePreviousFile(t *testing.T) {
	w, err := New(memDir(t, "64k"))
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte("o"), 16*1024)
	if _, err := w.Write("s", old, 0o400); err != nil {
		t.Fatal(err)
	}
	_, err = w.Write("s", bytes.Repeat([]byte("n"), 128*1024), 0o400)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "volume-size") {
		t.Fatalf("write past the size = %v; want ErrFull naming the annotation to raise", err)
	}
	got, _ := os.ReadFile(filepath.Join(w.Dir(), "s"))
	if !bytes.Equal(got, old) {
		t.Fatal("the previous file was damaged")
	}
	left, _ := filepath.Glob(filepath.Join(w.Dir(), ".s.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// A set whose last file does not fit leaves every file of the set as it
// was: all are staged before any is renamed.
func TestAFullTmpfsKeepsTheWholePreviousSet(t *testing.T) {
	w, err := New(memDir(t, "64k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteSet([]File{{"a", []byte("old a"), 0o400}, {"b", []byte("old b"), 0o400}}); err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteSet([]File{{"a", []byte("new a"), 0o400}, {"b", bytes.Repeat([]byte("n"), 128*1024), 0o400}})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("err %v, want ErrFull", err)
	}
	for n, want := range map[string]string{"a": "old a", "b": "old b"} {
		if got, _ := os.ReadFile(filepath.Join(w.Dir(), n)); string(got) != want {
			t.Errorf("%s = %q after a failed set, want %q", n, got, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(w.Dir(), ".*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	written, err := w.WriteSet([]File{{"a", []byte("old a"), 0o400}, {"b", []byte("new b"), 0o400}})
	if err != nil || len(written) != 1 || written[0] != "b" {
		t.Errorf("written %v, %v; want only the changed file", written, err)
	}
}

// Files in subdirectories (file-name-<name> with directories, and the
// .ramvault-mounts/<i> of another mount path) are written as one set, each
// through a temporary file in its own directory; the directories are the
// process's, 0700, and an existing one is kept (the same inode: the kubelet
// bind-mounts it).
func TestFilesInSubdirectoriesAreOneAtomicSetAndDirectoriesAreKept(t *testing.T) {
	w, err := New(memDir(t, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.MkdirAll(".ramvault-mounts/0"); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(filepath.Join(w.Dir(), ".ramvault-mounts/0"))
	if err != nil {
		t.Fatal(err)
	}
	set := []File{
		{Name: "conf/db/creds.json", Data: []byte("a"), Mode: 0o400},
		{Name: ".ramvault-mounts/0/tls.crt", Data: []byte("b"), Mode: 0o400},
		{Name: "top", Data: []byte("c"), Mode: 0o400},
	}
	names, err := w.WriteSet(set)
	if err != nil || len(names) != 3 {
		t.Fatalf("WriteSet = %v, %v", names, err)
	}
	for _, f := range set {
		if b, err := w.Read(f.Name); err != nil || string(b) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Name, b, err)
		}
	}
	for _, d := range []string{"conf", "conf/db", ".ramvault-mounts", ".ramvault-mounts/0"} {
		fi, err := os.Stat(filepath.Join(w.Dir(), d))
		if err != nil || fi.Mode().Perm() != 0o700 || fi.Mode()&os.ModeDir == 0 {
			t.Errorf("directory %s: %v %v, want 0700", d, fi.Mode(), err)
		}
	}
	if err := w.MkdirAll(".ramvault-mounts/0"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(w.Dir(), ".ramvault-mounts/0"))
	if !os.SameFile(before, after) {
		t.Error("the mount directory was replaced: a bind mount of it would no longer see the files")
	}

	// One file of the set cannot be staged (its directory is a file): no
	// file of the set changes, and no temporary file is left.
	if err := os.WriteFile(filepath.Join(w.Dir(), "blocker"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteSet([]File{
		{Name: "conf/db/creds.json", Data: []byte("a2"), Mode: 0o400},
		{Name: ".ramvault-mounts/0/tls.crt", Data: []byte("b2"), Mode: 0o400},
		{Name: "blocker/x", Data: []byte("x"), Mode: 0o400},
	})
	if err == nil {
		t.Fatal("a file under a regular file was written")
	}
	for name, want := range map[string]string{"conf/db/creds.json": "a", ".ramvault-mounts/0/tls.crt": "b"} {
		if b, _ := w.Read(name); string(b) != want {
			t.Errorf("%s = %q after a failed set, want %q", name, b, want)
		}
	}
	for _, d := range []string{"conf/db", ".ramvault-mounts/0"} {
		if left, _ := filepath.Glob(filepath.Join(w.Dir(), d, ".*.tmp-*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}
}

func TestASymlinkOrDotDotIsNoDirectory(t *testing.T) {
	w, err := New(memDir(t, "1m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(w.Dir(), "link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"link/f", "../f", "a/../f", "a//f", "/f"} {
		if _, err := w.Write(name, []byte("x"), 0o400); err == nil {
			t.Errorf("Write(%q) succeeded", name)
		}
	}
}

// A writer killed while staging leaves its temporary files; the next
// process removes them (and nothing else) before it writes.
func TestRemoveStagedTakesOutWhatAKilledWriterLeft(t *testing.T) {
	dir := memDir(t, "1m")
	w, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteSet([]File{{Name: "kv", Data: []byte("v1"), Mode: 0o400}, {Name: "sub/db", Data: []byte("v1"), Mode: 0o400}}); err != nil {
		t.Fatal(err)
	}
	// What stage leaves when the process dies between CreateTemp and rename.
	for _, name := range []string{".kv.tmp-123", "sub/.db.tmp-456"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := w.RemoveStaged()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != ".kv.tmp-123,sub/.db.tmp-456" {
		t.Errorf("removed %q", removed)
	}
	for _, name := range []string{"kv", "sub/db"} {
		if b, err := w.Read(name); err != nil || string(b) != "v1" {
			t.Errorf("%s: %q %v, want it kept", name, b, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("%d entries left, want kv and sub", len(ents))
	}
}
