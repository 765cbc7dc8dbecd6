package injector

import (
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A Pod deleted while its native agent waits for Vault goes when the hook
// returns: within its grace period, between 10 s and 2 min.
func TestTheNativeHookGivesUpWithinTheGracePeriod(t *testing.T) {
	for _, c := range []struct {
		grace *int64
		want  int64
	}{{nil, 25}, {new(int64(30)), 25}, {new(int64(60)), 55}, {new(int64(3600)), 120}, {new(int64(12)), 10}, {new(int64(0)), 10}} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: c.grace}}
		if got := nativeHookTimeout(pod); got != c.want {
			t.Errorf("grace %s: hook timeout %ds, want %ds", graceText(c.grace), got, c.want)
		}
	}
}

func graceText(g *int64) string {
	if g == nil {
		return "unset"
	}
	return strconv.FormatInt(*g, 10) + "s"
}
