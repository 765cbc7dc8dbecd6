// Package tmpfs writes secret files atomically into a memory-backed
// directory, and refuses any directory that is not tmpfs or ramfs.
package tmpfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Filesystem magic numbers (statfs f_type) of the memory-backed filesystems.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// ErrNotMemory is returned for a directory on a disk-backed filesystem.
var ErrNotMemory = errors.New("not a memory-backed filesystem (tmpfs or ramfs)")

// ErrFull is returned when the filesystem has no room for the new content;
// the previous file is left as it was.
var ErrFull = errors.New("no space left on the secrets volume")

// Writer writes files into one directory. They are owned by the uid the
// process runs as (the injector runs the agent as the app's uid, see
// injector/README.md; chowning would need privileges the agent does not have).
type Writer struct {
	dir string
}

// New checks that dir exists and is on tmpfs or ramfs.
func New(dir string) (*Writer, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("secrets directory %s: %w", dir, err)
	}
	if int64(st.Type) != tmpfsMagic && int64(st.Type) != ramfsMagic {
		return nil, fmt.Errorf("secrets directory %s is %w (filesystem type 0x%x): mount an emptyDir with medium: Memory there", dir, ErrNotMemory, st.Type)
	}
	return &Writer{dir: dir}, nil
}

// Dir is the directory written to.
func (w *Writer) Dir() string { return w.dir }

// Read returns the content of file name (an error wrapping os.ErrNotExist
// when there is none).
func (w *Writer) Read(name string) ([]byte, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(w.dir, name))
}

// Exists reports whether file name is there.
func (w *Writer) Exists(name string) bool {
	if validName(name) != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(w.dir, name))
	return err == nil
}

// validName checks a file's path relative to the directory: one or more
// segments separated by '/', none empty, "." or "..", no NUL.
func validName(name string) error {
	if name == "" || strings.ContainsRune(name, 0) || strings.HasPrefix(name, "/") {
		return fmt.Errorf("invalid file name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid file name %q", name)
		}
	}
	return nil
}

// MkdirAll creates directory name (relative, as a file name) and its
// parents, mode 0700: the process's uid, which is the app's, can traverse
// them. An existing directory is kept as it is — never replaced: a
// directory the kubelet bind-mounts (a subPath) must stay the same inode.
// A path component that is not a directory (a symlink included) is an
// error.
func (w *Writer) MkdirAll(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	cur := w.dir
	for _, seg := range strings.Split(name, "/") {
		cur = filepath.Join(cur, seg)
		fi, err := os.Lstat(cur)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("create directory %s: %s is not a directory", name, cur)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("create directory %s: %w", name, err)
		}
		if err := os.Mkdir(cur, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return w.classify(name, err)
		}
	}
	return nil
}

// Write replaces file name (a path relative to the directory; missing
// parent directories are created, mode 0700) with data, atomically: a temporary file in the same
// directory, fsync, chmod, rename. Readers see the old content or
// the new, never a partial file. It reports whether the file changed; equal
// content is not rewritten.
func (w *Writer) Write(name string, data []byte, mode os.FileMode) (bool, error) {
	changed, err := w.WriteSet([]File{{Name: name, Data: data, Mode: mode}})
	return len(changed) > 0, err
}

// File is one file of a set written together.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode
}

// WriteSet writes files as one set: every file whose content or mode
// differs is staged first (temporary file, fsync, chmod), and only when all
// are staged are they renamed into place, in order. A failure while staging
// (a full volume) leaves every file of the set as it was; a rename on the
// same tmpfs does not fail for want of space. A name may hold directories:
// each file is staged in its own directory (missing ones are created
// first, and may stay, empty, after a failure). It returns the names
// written; equal files are skipped.
func (w *Writer) WriteSet(files []File) ([]string, error) {
	type staged struct{ tmp, path, name string }
	var done []staged
	ok := false
	defer func() {
		if !ok {
			for _, st := range done {
				os.Remove(st.tmp)
			}
		}
	}()
	for _, f := range files {
		if err := validName(f.Name); err != nil {
			return nil, err
		}
		path := filepath.Join(w.dir, f.Name)
		if dir := filepath.Dir(f.Name); dir != "." {
			if err := w.MkdirAll(filepath.ToSlash(dir)); err != nil {
				return nil, err
			}
		}
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.Data) {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == f.Mode.Perm() {
				continue
			}
		}
		tmp, err := w.stage(f)
		if err != nil {
			return nil, err
		}
		done = append(done, staged{tmp, path, f.Name})
	}
	var names []string
	for i, st := range done {
		if err := os.Rename(st.tmp, st.path); err != nil {
			for _, rest := range done[i+1:] {
				os.Remove(rest.tmp)
			}
			ok = true
			return names, fmt.Errorf("rename into %s: %w", st.path, err)
		}
		names = append(names, st.name)
	}
	ok = true
	return names, nil
}

// stage writes f to a temporary file beside its destination (in the same
// directory, so the rename is atomic): written, fsynced, chmodded, closed.
// It returns the temporary file's path.
func (w *Writer) stage(f File) (string, error) {
	dir, base := filepath.Split(filepath.Join(w.dir, f.Name))
	if len(base) > 200 { // the temporary name stays under NAME_MAX (255)
		base = base[:200]
	}
	t, err := os.CreateTemp(dir, "."+base+".tmp-*") // stagedPattern
	if err != nil {
		return "", w.classify(f.Name, err)
	}
	tmp := t.Name()
	fail := func(err error) (string, error) {
		t.Close()
		os.Remove(tmp)
		return "", err
	}
	if _, err := t.Write(f.Data); err != nil {
		return fail(w.classify(f.Name, err))
	}
	if err := t.Sync(); err != nil {
		return fail(w.classify(f.Name, err))
	}
	if err := t.Chmod(f.Mode.Perm()); err != nil {
		return fail(fmt.Errorf("chmod %s: %w", f.Name, err))
	}
	if err := t.Close(); err != nil {
		os.Remove(tmp)
		return "", w.classify(f.Name, err)
	}
	return tmp, nil
}

// stagedPattern matches the temporary files stage makes.
const stagedPattern = ".*.tmp-*"

// RemoveStaged deletes the temporary files a writer killed while staging
// (SIGKILL, OOM) left anywhere in the directory, and returns their names.
// Call it before the first write of a new process: a file being staged then
// is this process's own. A directory it cannot read is skipped (it holds no
// staged file of ours: the writer made every directory it stages in).
func (w *Writer) RemoveStaged() ([]string, error) {
	var removed []string
	var errs []error
	err := filepath.WalkDir(w.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && path != w.dir {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if ok, _ := filepath.Match(stagedPattern, d.Name()); !ok || !d.Type().IsRegular() {
			return nil
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			return nil
		}
		rel, _ := filepath.Rel(w.dir, path)
		removed = append(removed, rel)
		return nil
	})
	return removed, errors.Join(append(errs, err)...)
}

// Remove deletes a file if it exists.
func (w *Writer) Remove(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(w.dir, name))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func (w *Writer) classify(name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("write %s: %w (raise ramvault.io/volume-size); the previous file is unchanged", name, ErrFull)
	}
	return fmt.Errorf("write %s: %w", name, err)
}
