package reload

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// signalByMount signals the main process of every container that mounts
// the agent's secrets volume at r.mountPath, once: in the Pod's shared PID
// namespace, a container's main process has parent PID 0 (its parent, the
// runtime's shim, is outside the namespace), the pause process is PID 1,
// and a target container's mount table has r.mountPath on the device
// (major:minor) of the agent's own secrets directory: every Memory emptyDir
// is a tmpfs of its own, so the device names the volume. A process started
// later in the same container (kubectl exec) also has parent PID 0: of the
// processes of one mount namespace only the first started is signalled.
func (r *Reloader) signalByMount(sig syscall.Signal) error {
	dev, err := r.ownDevice()
	if err != nil {
		return fmt.Errorf("signal the containers that mount %s: %w", r.mountPath, err)
	}
	ents, err := os.ReadDir(r.procDir)
	if err != nil {
		return err
	}
	type proc struct {
		pid   int
		ns    string
		start uint64
	}
	var found []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == r.self {
			continue
		}
		dir := filepath.Join(r.procDir, e.Name())
		if ppid, err := parentPID(dir); err != nil || ppid != 0 {
			continue
		}
		mounts, err := readMountinfo(filepath.Join(dir, "mountinfo"))
		if err != nil || !slices.ContainsFunc(mounts, func(m mountEntry) bool { return m.point == r.mountPath && m.dev == dev }) {
			continue
		}
		ns, err := os.Readlink(filepath.Join(dir, "ns", "mnt"))
		if err != nil {
			ns = "pid:" + e.Name() // unreadable: a container of its own
		}
		found = append(found, proc{pid, ns, startTime(dir)})
	}
	// The main process of each mount namespace: the first started (the
	// lowest pid of equal start times).
	slices.SortFunc(found, func(a, b proc) int {
		if c := strings.Compare(a.ns, b.ns); c != 0 {
			return c
		}
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.pid, b.pid)
	})
	sent := 0
	var errs []error
	for i, p := range found {
		if i > 0 && found[i-1].ns == p.ns {
			continue
		}
		if err := r.kill(p.pid, sig); err != nil {
			errs = append(errs, fmt.Errorf("signal %s to pid %d (mounts %s): %w", sig, p.pid, r.mountPath, err))
			continue
		}
		sent++
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if sent == 0 {
		return fmt.Errorf("no container's main process mounts the secrets volume at %s to signal (is shareProcessNamespace on? set ramvault.io/signal-process to name the process)", r.mountPath)
	}
	return nil
}

// ownDevice is the device (major:minor) of the mount that holds the agent's
// secrets directory, from its own mount table.
func (r *Reloader) ownDevice() (string, error) {
	if r.secretsDir == "" {
		return "", errors.New("no secrets directory")
	}
	mounts, err := readMountinfo(filepath.Join(r.procDir, "self", "mountinfo"))
	if err != nil {
		return "", err
	}
	dir := path.Clean(r.secretsDir)
	best, dev := -1, ""
	for _, m := range mounts { // the last, longest mount point over dir
		if (dir == m.point || m.point == "/" || strings.HasPrefix(dir, m.point+"/")) && len(m.point) >= best {
			best, dev = len(m.point), m.dev
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s is on no mount of /proc/self/mountinfo", dir)
	}
	return dev, nil
}

type mountEntry struct{ dev, point string }

// readMountinfo reads the device and mount point of each line of a
// /proc/<pid>/mountinfo (proc(5): id, parent id, major:minor, root, mount
// point, ...; octal escapes for space, tab, newline and backslash).
func readMountinfo(file string) ([]mountEntry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, mountEntry{dev: fields[2], point: unescapeOctal(fields[4])})
	}
	return out, sc.Err()
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parentPID is the PPid of /proc/<pid>/status.
func parentPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, errors.New("no PPid")
}

// startTime is field 22 of /proc/<pid>/stat (clock ticks after boot); 0
// when unreadable.
func startTime(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0
	}
	// The command (field 2) is in parentheses and may hold anything.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest) // from field 3
	if len(fields) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}
