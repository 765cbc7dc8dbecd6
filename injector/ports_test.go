package injector_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/pkg/spec"
)

// Prometheus's Kubernetes discovery (role pod) finds a port only where a
// container declares it; the scrape configuration in docs/operations.md
// keeps the agent's by its name.
func TestOnlyTheSidecarAgentDeclaresTheMetricsPortByName(t *testing.T) {
	metrics := []corev1.ContainerPort{{Name: injector.AgentMetricsPortName, ContainerPort: spec.AgentMetricsPort, Protocol: corev1.ProtocolTCP}}
	cases := []struct {
		mode       string
		init, side []corev1.ContainerPort // of the agent init container, of the sidecar agent
	}{
		{mode: "native", side: metrics},
		{mode: "classic", side: metrics},
		{mode: "init-only"},
	}
	for _, tc := range cases {
		t.Run("in "+tc.mode+" mode", func(t *testing.T) {
			pod := injecttest.Pod()
			pod.Annotations["ramvault.io/mode"] = tc.mode
			out, err := injector.Inject(pod, injecttest.Config())
			if err != nil {
				t.Fatal(err)
			}
			found := map[string][]corev1.ContainerPort{}
			for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
				found[c.Name] = c.Ports
			}
			if _, ok := found[injector.AgentContainer]; ok != (tc.side != nil) {
				t.Fatalf("sidecar agent present: %v, want %v", ok, tc.side != nil)
			}
			for name, want := range map[string][]corev1.ContainerPort{injector.AgentContainer: tc.side, injector.AgentInitContainer: tc.init} {
				if got := found[name]; !slices.Equal(got, want) {
					t.Errorf("%s ports = %+v, want %+v", name, got, want)
				}
			}
			if got := found["app"]; len(got) != 0 {
				t.Errorf("the app's ports changed: %+v", got)
			}
		})
	}
}
