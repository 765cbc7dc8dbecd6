package foundation

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"

	"github.com/ramvault/ramvault/test/stack"
)

// The product module must not pull in the Vault server (BSL) or Kubernetes
// itself: those are test tools built by the modules under test/tools.
func TestProductModuleRequiresNeitherVaultServerNorKubernetes(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == "github.com/hashicorp/vault" || r.Mod.Path == "k8s.io/kubernetes" {
			t.Errorf("go.mod requires %s %s", r.Mod.Path, r.Mod.Version)
		}
	}
}

// The agent runs in every Pod: no Kubernetes packages in its binary.
func TestAgentImportsNoKubernetesPackages(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/ramvault-agent")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
			t.Errorf("ramvault-agent depends on %s", p)
		}
	}
}
