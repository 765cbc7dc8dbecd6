package stack

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// NginxImage is nginx as a stock image is: Debian's nginx package (its
// binary, the libraries it links, from this Debian host), an nginx.conf of
// the image's own, and a default CMD — so that a Pod can run it with no
// command in its spec. The image serves HTTPS on :8443 with the certificate
// and key of /etc/nginx/tls/server.pem and runs as nginx (101), as the
// unprivileged variant of the official image does.
const NginxImage = "localhost/nginx:e2e"

// nginxConf is the image's configuration: everything it writes under /tmp
// (the Pod's user cannot write the package's paths), its log on stderr.
const nginxConf = `worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 8443 ssl;
        ssl_certificate /etc/nginx/tls/server.pem;
        ssl_certificate_key /etc/nginx/tls/server.pem;
        location / { return 200 "ok\n"; }
    }
}
`

// ImportNginxImage builds NginxImage from the nginx package that `make deps`
// downloads into bin/debs (test/tools/deps.sh) and imports it into the
// running stack's containerd.
func ImportNginxImage(ctx context.Context, env Env) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	im, err := nginxImage(filepath.Join(root, "bin", "debs"))
	if err != nil {
		return err
	}
	arc, err := im.ociArchive()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "nginx-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(arc); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return ImportImageArchive(ctx, env, f.Name())
}

func nginxImage(debs string) (imageSpec, error) {
	found, _ := filepath.Glob(filepath.Join(debs, "nginx_*.deb"))
	if len(found) == 0 {
		return imageSpec{}, fmt.Errorf("no nginx package in %s (run `make deps`)", debs)
	}
	bin, err := debFile(found[len(found)-1], "./usr/sbin/nginx")
	if err != nil {
		return imageSpec{}, err
	}
	libs, err := linkedLibraries(bin)
	if err != nil {
		return imageSpec{}, err
	}
	files := []layerFile{
		{path: "usr/sbin/nginx", mode: 0o755, data: bin},
		{path: "etc/nginx/nginx.conf", mode: 0o644, data: []byte(nginxConf)},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/false\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n")},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnginx:x:101:\n")},
		{path: "tmp", mode: 0o1777, isDir: true},
		{path: "etc/nginx/tls", mode: 0o755, isDir: true},
		{path: "var/lib/nginx", mode: 0o1777, isDir: true},
		{path: "var/log/nginx", mode: 0o1777, isDir: true},
	}
	for _, l := range libs {
		b, err := os.ReadFile(l) // the file a symlink names, under the link's name
		if err != nil {
			return imageSpec{}, err
		}
		files = append(files, layerFile{path: strings.TrimPrefix(l, "/"), mode: 0o755, data: b})
	}
	return imageSpec{name: NginxImage, files: withParents(files), cmd: []string{"nginx", "-g", "daemon off;"},
		env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, user: "101:101"}, nil
}

// debFile reads one file out of a Debian package. (The whole tarball, then
// the file: dpkg-deb's decompressor child keeps the pipes open, so a reader
// that stops early and kills dpkg-deb waits for ever.)
func debFile(deb, name string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s has no %s", deb, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", deb, err)
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}

// linkedLibraries are the shared libraries (and the loader) a binary needs,
// as ldd resolves them on this host.
func linkedLibraries(bin []byte) ([]string, error) {
	f, err := os.CreateTemp("", "nginx-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(bin); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	if err := os.Chmod(f.Name(), 0o755); err != nil {
		return nil, err
	}
	out, err := exec.Command("ldd", f.Name()).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd nginx: %w", err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for _, p := range fields {
			if strings.HasPrefix(p, "/") {
				libs = append(libs, p)
				break
			}
		}
	}
	return libs, sc.Err()
}

// withParents adds a directory entry for every parent the files need.
func withParents(files []layerFile) []layerFile {
	have := map[string]bool{}
	for _, f := range files {
		if f.isDir {
			have[f.path] = true
		}
	}
	var dirs []layerFile
	for _, f := range files {
		for d := path.Dir(f.path); d != "." && !have[d]; d = path.Dir(d) {
			have[d] = true
			dirs = append(dirs, layerFile{path: d, mode: 0o755, isDir: true})
		}
	}
	slices.SortFunc(dirs, func(a, b layerFile) int { return strings.Compare(a.path, b.path) })
	return append(dirs, files...)
}
