package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// An idle agent is not woken every second to re-read its cgroup's CPU limit.
func TestTheAgentDoesNotPollItsCPULimit(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	for _, s := range bi.Settings {
		if s.Key == "DefaultGODEBUG" && strings.Contains(s.Value, "updatemaxprocs=0") {
			return
		}
	}
	t.Errorf("the agent's DefaultGODEBUG has no updatemaxprocs=0: %v", bi.Settings)
}
