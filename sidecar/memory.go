package sidecar

import (
	"runtime/debug"
	"sync"
)

// An agent runs in every Pod of a cluster and idles for minutes or hours
// between two renewals, so what it holds while idle is what it costs. A
// change of the files makes garbage (JSON decoding of Vault's answers,
// template output, TLS records), and the runtime keeps the pages the heap
// grew into: its goal is at least 4 MiB, and its scavenger returns pages
// only down to about that goal. After each change of the files (the first
// write, then every re-issue or re-read) the agent returns them at once: a
// forced collection over a heap of a few hundred KiB, once per change, after
// the files are written and the app is told.
var releaseMemory = releaseMemoryNow

var releasing sync.Mutex

func releaseMemoryNow() {
	if !releasing.TryLock() {
		return // another change is returning memory right now
	}
	defer releasing.Unlock()
	debug.FreeOSMemory()
}
