package foundation

import (
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/ramvault/ramvault/test/stack"
)

func client(t *testing.T, env stack.Env) *kubernetes.Clientset {
	t.Helper()
	cs, err := stack.KubeClient(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
