package stack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// layerFile is one entry of an image layer.
type layerFile struct {
	path     string // inside the image, no leading slash
	mode     int64
	data     []byte
	linkTo   string // symlink target when set
	isDir    bool
	uid, gid int
}

// imageSpec is a single-layer image built without a registry or daemon.
type imageSpec struct {
	name  string // full reference, e.g. localhost/busybox:e2e
	files []layerFile
	entry []string
	cmd   []string
	env   []string
	user  string
}

// ociArchive renders the image as an OCI image-layout tarball that
// `ctr images import` accepts; the name travels in the index annotations.
func (im imageSpec) ociArchive() ([]byte, error) {
	var layer bytes.Buffer
	diff := sha256.New()
	gz := gzip.NewWriter(&layer)
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
	epoch := time.Unix(0, 0)
	for _, f := range im.files {
		h := &tar.Header{Name: f.path, Mode: f.mode, ModTime: epoch, Uid: f.uid, Gid: f.gid, Format: tar.FormatPAX}
		switch {
		case f.isDir:
			h.Typeflag, h.Name = tar.TypeDir, f.path+"/"
		case f.linkTo != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.linkTo
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": im.entry, "Cmd": im.cmd, "Env": im.env, "User": im.user},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff.Sum(nil))}},
	})
	blobs := map[string][]byte{}
	desc := func(mediaType string, b []byte) map[string]any {
		d := sha256.Sum256(b)
		digest := "sha256:" + hex.EncodeToString(d[:])
		blobs[digest] = b
		return map[string]any{"mediaType": mediaType, "digest": digest, "size": len(b)}
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar+gzip", layer.Bytes())},
	})
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{"io.containerd.image.name": im.name, "org.opencontainers.image.ref.name": im.name}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})

	var out bytes.Buffer
	ow := tar.NewWriter(&out)
	add := func(name string, b []byte) error {
		if err := ow.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := ow.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := add("index.json", index); err != nil {
		return nil, err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), ow.Close()
}

// baseImages are the pause image (our own static pause binary) and busybox
// (Debian's busybox-static with every applet linked), tagged for tests.
func baseImages(bin string) ([]imageSpec, error) {
	pause, err := os.ReadFile(filepath.Join(bin, "pause"))
	if err != nil {
		return nil, fmt.Errorf("pause binary missing (run `make tools`): %w", err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static missing (run `make deps`): %w", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	files := []layerFile{
		{path: "bin", mode: 0o755, isDir: true},
		{path: "etc", mode: 0o755, isDir: true},
		{path: "tmp", mode: 0o1777, isDir: true},
		{path: "bin/busybox", mode: 0o755, data: bb},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			files = append(files, layerFile{path: "bin/" + a, mode: 0o777, linkTo: "busybox"})
		}
	}
	return []imageSpec{
		{name: PauseImage, files: []layerFile{{path: "pause", mode: 0o755, data: pause}}, entry: []string{"/pause"}, user: "65535:65535"},
		{name: BusyboxImage, files: files, cmd: []string{"sh"}, env: []string{"PATH=/bin"}},
	}, nil
}

// importImages builds (or reuses from the cache) each image's archive and
// imports it into containerd's k8s.io namespace.
func (s *Stack) importImages(ctx context.Context) error {
	imgs, err := baseImages(s.cfg.Bin)
	if err != nil {
		return err
	}
	for _, im := range imgs {
		arc, err := im.ociArchive()
		if err != nil {
			return fmt.Errorf("image %s: %w", im.name, err)
		}
		f := s.p.cache("images", strings.NewReplacer("/", "_", ":", "_").Replace(im.name)+".tar")
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, arc, 0o644); err != nil {
			return err
		}
		if err := s.ImportArchive(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// ImportArchive imports an OCI or docker archive into the stack's containerd,
// where Pods can run it with imagePullPolicy Never or IfNotPresent.
func (s *Stack) ImportArchive(ctx context.Context, file string) error {
	_, err := run(ctx, "ctr", "-a", s.p.containerdSock(), "-n", "k8s.io", "images", "import", file)
	if err != nil {
		return fmt.Errorf("import %s into containerd: %w", file, err)
	}
	return nil
}

// ImportImageArchive imports an image archive (such as `make image` writes
// under bin/images/) into the running stack's containerd.
func ImportImageArchive(ctx context.Context, env Env, file string) error {
	s := &Stack{p: paths{env.StateDir}}
	return s.ImportArchive(ctx, file)
}
