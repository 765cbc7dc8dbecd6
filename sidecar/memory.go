package sidecar

import (
	"bufio"
	"bytes"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// An agent runs in every Pod of a cluster and idles for minutes or hours
// between two renewals, so what it holds while idle is what it costs. After
// each change of the files (the first write, then every re-issue or
// re-read), once the files are written and the app is told, the agent gives
// back what it no longer uses:
//   - the heap pages the change's garbage grew into (JSON decoding of Vault's
//     answers, template output, TLS records): the runtime's heap goal is at
//     least 4 MiB and its scavenger returns pages only down to about that;
//   - the pages of its own binary that starting and the change mapped in
//     (code and read-only data: about 9 MiB of a 10 MiB binary, because the
//     kernel maps the neighbours of each page it faults in). They are clean
//     copies of the binary's file, dropped with MADV_PAGEOUT; what the idle
//     agent runs (timers, probes) faults back in, a page and its neighbours
//     at a time. A page another process maps too (the same image's agent in
//     another Pod) is left alone by the kernel: it is shared, not ours.
//
// Measured with `make bench-agent`: RSS 30 s after the first write.
var releaseMemory = releaseMemoryNow

var releasing sync.Mutex

func releaseMemoryNow() {
	if !releasing.TryLock() {
		return // another change is returning memory right now
	}
	defer releasing.Unlock()
	debug.FreeOSMemory()
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
		for _, r := range binaryReadOnlyMappings(maps) {
			// EINVAL on kernels before 5.4 (no MADV_PAGEOUT): the pages
			// just stay, as they did.
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, r[0], r[1]-r[0], madvPageout)
		}
	}
}

const madvPageout = 21 // MADV_PAGEOUT, Linux 5.4

// binaryReadOnlyMappings returns the [start, end) of each private read-only
// file mapping (code, read-only data) of the file mapped first in maps (the
// format of /proc/self/maps): the executable, for a static binary.
func binaryReadOnlyMappings(maps []byte) [][2]uintptr {
	var out [][2]uintptr
	var exe string
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 00400000-008d2000 r-xp 00000000 fe:00 10027025   /ramvault-agent
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[4] == "0" {
			continue
		}
		path := strings.Join(f[5:], " ")
		if exe == "" {
			exe = path
		}
		if path != exe || (f[1] != "r-xp" && f[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}
