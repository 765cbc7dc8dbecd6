package sidecar

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Memory is handed back after the first write and after every change of the
// files, not on a renewal that changes nothing.
func TestMemoryIsReturnedAfterEachChangeOfTheFiles(t *testing.T) {
	var released atomic.Int32
	releaseMemory = func() { released.Add(1) }
	t.Cleanup(func() { releaseMemory = releaseMemoryNow })

	ta := newTestAgent(t, modeSidecar, map[string]string{dbSecret: "database/creds/app"})
	ta.vault.leaseTTL, ta.vault.leaseMax = time.Minute, 100*time.Second
	ta.start(t)
	if n := released.Load(); n != 1 {
		t.Fatalf("memory returned %d times after the first write, want 1", n)
	}
	for ta.vault.count("renew-lease ") < 1 {
		ta.step(t)
	}
	if n := released.Load(); n != 1 {
		t.Errorf("memory returned %d times after a renewal, want still 1", n)
	}
	for ta.vault.count("get ") < 2 {
		ta.step(t)
	}
	ta.settle(t)
	if n := released.Load(); n != 2 {
		t.Errorf("memory returned %d times after a re-issue, want 2", n)
	}
}

func BenchmarkReleaseMemory(b *testing.B) {
	for b.Loop() {
		releaseMemoryNow()
	}
}

func TestBinaryReadOnlyMappingsAreTheExecutablesCodeAndData(t *testing.T) {
	maps := []byte(`00400000-008d2000 r-xp 00000000 fe:00 10027025                           /ramvault-agent
008d2000-00de4000 r--p 004d2000 fe:00 10027025                           /ramvault-agent
00de4000-00e55000 rw-p 009e4000 fe:00 10027025                           /ramvault-agent
00e55000-02e98000 rw-p 00000000 00:00 0
7f5e15f20000-7f5e16100000 r--p 00000000 fe:00 42                         /etc/some file
7ffd1000-7ffd2000 r-xp 00000000 00:00 0                                  [vdso]
`)
	got := binaryReadOnlyMappings(maps)
	want := [][2]uintptr{{0x400000, 0x8d2000}, {0x8d2000, 0xde4000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("mappings %x, want %x (code and read-only data of the executable only)", got, want)
	}
	if got := binaryReadOnlyMappings([]byte("garbage\n\n0-0 r-xp 0 0:0 1 /x\n")); len(got) != 0 {
		t.Errorf("mappings %x from garbage and an empty range, want none", got)
	}
}

// The real thing in this test binary: it must not crash the process that
// runs on the pages it drops.
func TestReleaseMemoryNowKeepsTheProcessRunning(t *testing.T) {
	releaseMemoryNow()
	releaseMemoryNow()
	if s := strings.Repeat("x", 3); s != "xxx" {
		t.Fatal(s)
	}
}
