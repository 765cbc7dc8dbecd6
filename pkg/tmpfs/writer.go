// Package tmpfs writes secret files atomically into a memory-backed
// directory, and refuses any directory that is not tmpfs or ramfs.
package tmpfs

import (
	"bytes"
	"errors"
	"fmt"
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

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid file name %q", name)
	}
	return nil
}

// Write replaces file name with data, atomically: a temporary file in the same
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
// same tmpfs does not fail for want of space. It returns the names written;
// equal files are skipped.
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

// stage writes f to a temporary file beside its destination: written,
// fsynced, chmodded, closed. It returns the temporary file's path.
func (w *Writer) stage(f File) (string, error) {
	t, err := os.CreateTemp(w.dir, "."+f.Name+".tmp-*")
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

// Remove deletes a file if it exists.
func (w *Writer) Remove(name string) error {
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
