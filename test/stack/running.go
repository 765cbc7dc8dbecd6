package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	vault "github.com/hashicorp/vault/api"
)

// Running returns how to reach the stack `make dev-up` started (for the
// demo and bench commands; tests use Require).
func Running() (Env, error) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		return Env{}, err
	}
	env, err := ReadEnv(filepath.Join(cfg.Dir, "env"))
	if err != nil {
		return Env{}, fmt.Errorf("stack is not up (run `make dev-up`): %w", err)
	}
	return env, nil
}

// Clients is the running stack with a Kubernetes and a Vault (root) client,
// what the demo and the bench commands start from.
func Clients() (Env, *kubernetes.Clientset, *vault.Client, error) {
	env, err := Running()
	if err != nil {
		return env, nil, nil, err
	}
	cs, err := KubeClient(env.Kubeconfig)
	if err != nil {
		return env, nil, nil, err
	}
	vc, err := env.VaultClient()
	return env, cs, vc, err
}

// AppNamespace makes sure namespace ns and its ServiceAccount "app" exist.
func AppNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// BuildAgent builds ramvault-agent of this checkout into dir (static, as
// the image has it) for the bench commands that run it on the host, and
// returns its path.
func BuildAgent(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ramvault-agent")
	b := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/ramvault-agent")
	b.Dir, b.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := b.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build agent: %v\n%s", err, out)
	}
	return bin, nil
}
