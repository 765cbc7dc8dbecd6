package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Filesystem magic numbers (statfs f_type) of the memory-backed filesystems.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// FileInfo describes a secret file without its content.
type FileInfo struct {
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"`       // permission bits in octal, e.g. "0400"
	UID        int    `json:"uid"`        // owner
	GID        int    `json:"gid"`        // group
	Filesystem string `json:"filesystem"` // "tmpfs", "ramfs" or "other (0x…)"
	Readable   bool   `json:"readable"`   // the app can open it
}

// listFiles describes the regular files of dir, skipping dot files (the
// agent's status file and temporary files), sorted by name.
func listFiles(dir string) ([]FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return []FileInfo{}, fileErr(err)
	}
	out := []FileInfo{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			continue // replaced between ReadDir and Stat
		}
		fi := FileInfo{Name: e.Name(), Size: st.Size, Mode: fmt.Sprintf("%04o", st.Mode&0o7777),
			UID: int(st.Uid), GID: int(st.Gid), Filesystem: filesystem(path)}
		if f, err := os.Open(path); err == nil {
			fi.Readable = true
			f.Close()
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// filesystem names the filesystem path is on.
func filesystem(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch int64(st.Type) {
	case tmpfsMagic:
		return "tmpfs"
	case ramfsMagic:
		return "ramfs"
	default:
		return fmt.Sprintf("other (0x%x)", st.Type)
	}
}
