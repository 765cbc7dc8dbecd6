package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The stack's containerd puts each container of the k8s.io namespace in a
// cgroup of its own, named by its ID, in every v1 hierarchy (the host is
// cgroup v1; the kubelet runs with cgroupsPerQOS off).
const (
	memoryCgroups  = "/sys/fs/cgroup/memory/k8s.io"
	cpuacctCgroups = "/sys/fs/cgroup/cpuacct/k8s.io"
)

// containerMemory is a container's memory.usage_in_bytes (what the kernel
// charges it: anonymous memory, page cache, its tmpfs files) and the RSS
// part of it (memory.stat total_rss: anonymous memory only).
func containerMemory(id string) (usage, rss int64, err error) {
	dir := filepath.Join(memoryCgroups, id)
	if usage, err = readInt(filepath.Join(dir, "memory.usage_in_bytes")); err != nil {
		return 0, 0, err
	}
	f, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	rss, err = statField(f, "total_rss")
	return usage, rss, err
}

// containerCPU is a container's cpuacct.usage: CPU time in nanoseconds.
func containerCPU(id string) (int64, error) {
	return readInt(filepath.Join(cpuacctCgroups, id, "cpuacct.usage"))
}

// nodeMemoryUsed is MemTotal − MemAvailable of /proc/meminfo, in bytes.
func nodeMemoryUsed() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return memUsed(f)
}

func memUsed(r io.Reader) (int64, error) {
	vals := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				vals[strings.TrimSuffix(f[0], ":")] = v * 1024
			}
		}
	}
	total, ok1 := vals["MemTotal"]
	avail, ok2 := vals["MemAvailable"]
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("/proc/meminfo: no MemTotal or MemAvailable")
	}
	return total - avail, sc.Err()
}

func statField(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == name {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("memory.stat: no %s", name)
}

func readInt(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// loadAverage is the 1-minute load average, or -1 if unreadable.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
