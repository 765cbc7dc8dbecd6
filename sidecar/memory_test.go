package sidecar

import (
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
