package stack

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPeerImagesRunVaultK8sAndVaultAgentAsItsContainersExpect(t *testing.T) {
	bin := t.TempDir()
	for _, f := range []string{"vault-k8s-injector", "vault", "pause"} {
		if err := os.WriteFile(filepath.Join(bin, f), []byte(f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := peerImages(bin)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]imageSpec{}
	for _, im := range imgs {
		byName[im.name] = im
	}
	inj, agent := byName[VaultK8sImage], byName[VaultAgentImage]
	if !slices.Equal(inj.entry, []string{"/bin/vault-k8s"}) || inj.user != "100:1000" {
		t.Errorf("injector image: entry %v, user %q", inj.entry, inj.user)
	}
	// vault-k8s's containers run `/bin/sh -ec 'echo … | base64 -d > /home/vault/config.json && vault agent …'`.
	paths := map[string]layerFile{}
	for _, f := range agent.files {
		paths[f.path] = f
	}
	for _, p := range []string{"bin/sh", "bin/base64", "bin/sleep", "bin/vault", "home/vault"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("agent image has no %s", p)
		}
	}
	if string(paths["bin/vault"].data) != "vault" || paths["home/vault"].uid != 100 || !slices.Contains(agent.env, "PATH=/bin") {
		t.Errorf("agent image: vault %q, home uid %d, env %v", paths["bin/vault"].data, paths["home/vault"].uid, agent.env)
	}
	if err := os.Remove(filepath.Join(bin, "vault-k8s-injector")); err != nil {
		t.Fatal(err)
	}
	if _, err := peerImages(bin); err == nil || !strings.Contains(err.Error(), "build-vaultk8s.sh") {
		t.Errorf("without the injector: %v, want the script that builds it named", err)
	}
}
