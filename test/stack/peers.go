package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The peer's images, for running hashicorp/vault-k8s beside ramvault on the
// stack (`make bench-scale`): its injector, the module's own command
// (bin/vault-k8s-injector, test/tools/build-vaultk8s.sh), and Vault Agent as
// vault-k8s users run it: the `vault` binary as the agent image, with the
// shell and base64 its injected containers' command needs (the official
// image is Alpine with the same binary).
const (
	VaultK8sImage   = "localhost/vault-k8s:1.6.2"
	VaultAgentImage = "localhost/vault:1.21.0"
)

// peerImages are the two images; they run as vault-k8s's defaults do
// (uid 100, gid 1000).
func peerImages(bin string) ([]imageSpec, error) {
	injector, err := os.ReadFile(filepath.Join(bin, "vault-k8s-injector"))
	if err != nil {
		return nil, fmt.Errorf("vault-k8s injector missing (run test/tools/build-vaultk8s.sh, which make bench-scale runs): %w", err)
	}
	vault, err := os.ReadFile(filepath.Join(bin, "vault"))
	if err != nil {
		return nil, fmt.Errorf("vault binary missing (run `make tools`): %w", err)
	}
	base, err := baseImages(bin)
	if err != nil {
		return nil, err
	}
	var busybox []layerFile
	for _, im := range base {
		if im.name == BusyboxImage {
			busybox = im.files
		}
	}
	home := []layerFile{{path: "home", mode: 0o755, isDir: true}, {path: "home/vault", mode: 0o755, isDir: true, uid: 100, gid: 1000}}
	return []imageSpec{
		{name: VaultK8sImage, files: []layerFile{{path: "bin", mode: 0o755, isDir: true}, {path: "bin/vault-k8s", mode: 0o755, data: injector}},
			entry: []string{"/bin/vault-k8s"}, user: "100:1000"},
		{name: VaultAgentImage, files: append(append(append([]layerFile(nil), busybox...), home...),
			layerFile{path: "bin/vault", mode: 0o755, data: vault}),
			entry: []string{"vault"}, env: []string{"PATH=/bin", "HOME=/home/vault"}, user: "100:1000"},
	}, nil
}

// ImportPeerImages builds VaultK8sImage and VaultAgentImage from bin/ and
// imports them into the running stack's containerd. An archive is rebuilt
// only when the binaries it holds changed (the agent's carries the 350 MB
// vault binary).
func ImportPeerImages(ctx context.Context, env Env) error {
	cfg, err := Config{Dir: env.StateDir}.withDefaults()
	if err != nil {
		return err
	}
	var stamp strings.Builder
	for _, name := range []string{"vault-k8s-injector", "vault", "pause"} {
		fi, err := os.Stat(filepath.Join(cfg.Bin, name))
		if err != nil {
			return fmt.Errorf("%s missing in %s (run `make tools`): %w", name, cfg.Bin, err)
		}
		fmt.Fprintf(&stamp, "%s %d %d\n", name, fi.Size(), fi.ModTime().UnixNano())
	}
	p := paths{cfg.Dir}
	stampFile := p.cache("images", "peers.stamp")
	imgs, err := peerImages(cfg.Bin)
	if err != nil {
		return err
	}
	fresh := false
	if b, err := os.ReadFile(stampFile); err == nil && string(b) == stamp.String() {
		fresh = true
	}
	for _, im := range imgs {
		f := p.cache("images", strings.NewReplacer("/", "_", ":", "_").Replace(im.name)+".tar")
		if _, err := os.Stat(f); err != nil || !fresh {
			arc, err := im.ociArchive()
			if err != nil {
				return fmt.Errorf("image %s: %w", im.name, err)
			}
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(f, arc, 0o644); err != nil {
				return err
			}
		}
		if err := ImportImageArchive(ctx, env, f); err != nil {
			return err
		}
	}
	return os.WriteFile(stampFile, []byte(stamp.String()), 0o644)
}

// LockExclusive takes the stack's lock exclusively, after every test binary
// using the stack has finished, and keeps other tests from starting until
// release is called: for a bench that needs the node to itself (`make
// bench-scale`). waiting is called once if the lock is not free at once.
func LockExclusive(env Env, waiting func()) (release func(), err error) {
	cfg, err := Config{Dir: env.StateDir}.withDefaults()
	if err != nil {
		return nil, err
	}
	fd, err := lockFile(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if waiting != nil {
			waiting()
		}
		if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
			syscall.Close(fd)
			return nil, err
		}
	}
	return func() { syscall.Close(fd) }, nil
}
