package sidecar

import (
	"log/slog"
	"syscall"
)

const (
	prSetDumpable = 4
	rlimitMemlock = 8
	mclCurrent    = 1
	mclFuture     = 2
)

// harden keeps secrets out of swap and core dumps and makes every file the
// agent creates owner-only. mlockall is attempted only when RLIMIT_MEMLOCK
// allows it generously: locking future mappings under a small limit would
// make later allocations fail. Refusals are logged once and the agent goes on.
func harden(log *slog.Logger) {
	syscall.Umask(0o077)
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		log.Warn("could not mark the process non-dumpable", "err", errno.Error())
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(rlimitMemlock, &lim); err != nil {
		log.Warn("mlockall skipped: cannot read RLIMIT_MEMLOCK", "err", err)
		return
	}
	const enough = 256 << 20
	if lim.Cur != ^uint64(0) && lim.Cur < enough {
		log.Info("mlockall skipped: RLIMIT_MEMLOCK too small to lock the agent's memory safely", "limit_bytes", lim.Cur)
		return
	}
	if err := syscall.Mlockall(mclCurrent | mclFuture); err != nil {
		log.Info("mlockall refused; memory may be swapped", "err", err)
	}
}
