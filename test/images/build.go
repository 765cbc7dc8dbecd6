package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Product is one image `make image` exports: the Dockerfile target and the
// image's name (localhost/<Name>:<version>, bin/images/<Name>.tar).
type Product struct{ Target, Name string }

// Products are the images `make image` builds, in build order.
func Products() []Product {
	return []Product{{"agent", "ramvault-agent"}, {"ramvault", "ramvault"}, {"example-app", "ramvault-example-app"}}
}

// Platforms are the platforms every image is built for.
func Platforms() []Platform {
	return []Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
}

// DevTag is the second tag of every image: the one the dev and kind
// overlays (and nothing else) name.
const DevTag = "dev"

// Options of Build.
type Options struct {
	Root     string    // the checkout
	Out      string    // where the archives and SBOMs go (bin/images)
	Version  string    // the release (VERSION): stamped in, the tag, the label
	Revision string    // the git commit: the revision label
	Created  time.Time // the images' creation time (the commit's): same inputs, same images
	Log      io.Writer
}

// Build cross-compiles the binaries for each platform and assembles each
// product from its Dockerfile stage with buildah, into Out/<name>.tar (one
// OCI index per image, tagged Version and dev) and Out/<name>.sbom.json.
// Nothing is built when the inputs (sources, Dockerfile, this builder,
// version, revision, Go toolchain, CA bundle) are those of the last build.
func Build(ctx context.Context, o Options) error {
	start := time.Now()
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(o.Out, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	df, err := readDockerfile(o.Root)
	if err != nil {
		return err
	}
	stamp := filepath.Join(o.Out, ".images.inputs")
	inputs, err := inputsHash(o)
	if err != nil {
		return err
	}
	if old, _ := os.ReadFile(stamp); string(old) == inputs && outputsExist(o.Out) {
		fmt.Fprintf(o.Log, "image: %s is up to date (version %s, revision %.12s)\n", o.Out, o.Version, o.Revision)
		return nil
	}
	work, err := os.MkdirTemp("", "ramvault-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	args := map[string]string{"VERSION": o.Version, "REVISION": o.Revision}
	ldflags := os.Expand(df.LDFlags, func(k string) string { return args[k] })
	for _, p := range Platforms() {
		t := time.Now()
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags,
			"-o", filepath.Join(work, p.Architecture) + "/"}, df.Packages...)...)
		cmd.Dir = o.Root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build for %s: %v\n%s", p, err, out)
		}
		fmt.Fprintf(o.Log, "image: compiled %s for %s in %s\n", strings.Join(df.Packages, " "), p, since(t))
	}
	for _, pr := range Products() {
		t := time.Now()
		st := df.Stages[pr.Target]
		if st == nil {
			return fmt.Errorf("Dockerfile has no final stage %s (image %s)", pr.Target, pr.Name)
		}
		if err := buildProduct(ctx, o, df, st, pr, work); err != nil {
			return fmt.Errorf("image %s: %w", pr.Name, err)
		}
		fmt.Fprintf(o.Log, "image: %s/%s.tar (localhost/%s:%s and :%s, %d platforms) and its SBOM in %s\n",
			o.Out, pr.Name, pr.Name, o.Version, DevTag, len(Platforms()), since(t))
	}
	// The per-platform images of earlier builds, untagged by this one.
	_, _ = buildah(ctx, "rmi", "--prune")
	if err := os.WriteFile(stamp, []byte(inputs), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "image: all built in %s\n", since(start))
	return nil
}

func buildProduct(ctx context.Context, o Options, df *Dockerfile, st *Stage, pr Product, work string) error {
	labels := st.Expanded(map[string]string{"VERSION": o.Version, "REVISION": o.Revision})
	list := "localhost/" + pr.Name + ":" + o.Version
	var sbom []sbomFile
	var instances []string
	for _, p := range Platforms() {
		files, err := df.hostFiles(st, filepath.Join(work, p.Architecture))
		if err != nil {
			return err
		}
		c, err := buildah(ctx, "from", "--quiet", "--name", fmt.Sprintf("ramvault-build-%s-%s-%d", pr.Name, p.Architecture, os.Getpid()), "scratch")
		if err != nil {
			return err
		}
		c = strings.TrimSpace(c)
		ok := false
		defer func() {
			if !ok {
				_, _ = buildah(context.Background(), "rm", c)
			}
		}()
		for i, f := range st.Files {
			a := []string{"copy", "--quiet", "--chown", "0:0"}
			if f.Mode != 0 {
				a = append(a, "--chmod", fmt.Sprintf("%04o", f.Mode))
			}
			if _, err := buildah(ctx, append(a, c, files[i], f.Dst)...); err != nil {
				return err
			}
			sbom = append(sbom, sbomFile{platform: p, dst: f.Dst, host: files[i], goBinary: strings.HasPrefix(f.Src, "/out/")})
		}
		entry, _ := json.Marshal(st.Entrypoint)
		a := []string{"config", "--os", p.OS, "--arch", p.Architecture, "--user", st.User, "--entrypoint", string(entry),
			"--created-by", "test/images (Dockerfile target " + pr.Target + ")"}
		for _, k := range sortedKeys(labels) {
			a = append(a, "--label", k+"="+labels[k])
		}
		if _, err := buildah(ctx, append(a, c)...); err != nil {
			return err
		}
		instance := list + "-" + p.Architecture
		if _, err := buildah(ctx, "commit", "--quiet", "--rm", "--format", "oci", "--timestamp", fmt.Sprint(o.Created.Unix()),
			c, "containers-storage:"+instance); err != nil {
			return err
		}
		ok = true
		instances = append(instances, instance)
	}
	// The multi-platform index, in buildah's storage as localhost/NAME:VERSION
	// (`buildah manifest push --all` sends it to a registry), and exported.
	_, _ = buildah(ctx, "manifest", "rm", list)
	if _, err := buildah(ctx, "manifest", "create", list); err != nil {
		return err
	}
	for _, in := range instances {
		if _, err := buildah(ctx, "manifest", "add", list, "containers-storage:"+in); err != nil {
			return err
		}
	}
	layout := filepath.Join(work, "layout-"+pr.Name)
	for _, tag := range []string{o.Version, DevTag} {
		if _, err := buildah(ctx, "manifest", "push", "--quiet", "--all", "--format", "oci", list,
			"oci:"+layout+":localhost/"+pr.Name+":"+tag); err != nil {
			return err
		}
	}
	if err := tarLayout(layout, filepath.Join(o.Out, pr.Name+".tar"), labels, o.Created); err != nil {
		return err
	}
	bom, err := buildSBOM("localhost/"+pr.Name, o.Version, labels, o.Created, sbom)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(o.Out, pr.Name+".sbom.json"), append(b, '\n'))
}

// hostFiles maps each COPY of the stage to the file on this host: the
// build stage's /out/<binary> to the cross-compiled one in dir, any other
// path (the CA bundle) to the same path here, as the Docker build's builder
// image has it from its own distribution.
func (d *Dockerfile) hostFiles(st *Stage, dir string) ([]string, error) {
	var out []string
	for _, f := range st.Files {
		src := f.Src
		if rest, ok := strings.CutPrefix(f.Src, "/out/"); ok {
			known := false
			for _, p := range d.Packages {
				known = known || path.Base(p) == rest
			}
			if !known {
				return nil, fmt.Errorf("Dockerfile stage %s copies %s, which the build stage's go build does not write", st.Name, f.Src)
			}
			src = filepath.Join(dir, rest)
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("Dockerfile stage %s copies %s: %w", st.Name, f.Src, err)
		}
		out = append(out, src)
	}
	return out, nil
}

func readDockerfile(root string) (*Dockerfile, error) {
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseDockerfile(f)
}

// ReadDockerfile parses the checkout's Dockerfile.
func ReadDockerfile(root string) (*Dockerfile, error) { return readDockerfile(root) }

func outputsExist(out string) bool {
	for _, p := range Products() {
		for _, f := range []string{p.Name + ".tar", p.Name + ".sbom.json"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				return false
			}
		}
	}
	return true
}

// inputsHash covers what the images are made of.
func inputsHash(o Options) (string, error) {
	h := sha256.New()
	gov, _ := exec.Command("go", "env", "GOVERSION").Output()
	fmt.Fprintf(h, "%s %s %d %s %v\n", o.Version, o.Revision, o.Created.Unix(), bytes.TrimSpace(gov), Platforms())
	var files []string
	for _, top := range []string{"Dockerfile", "go.mod", "go.sum", "cmd", "pkg", "injector", "sidecar", "examples", "test/images"} {
		err := filepath.WalkDir(filepath.Join(o.Root, top), func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	files = append(files, "/etc/ssl/certs/ca-certificates.crt")
	sort.Strings(files)
	for _, f := range files {
		s, err := fileSHA256(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s\n", s, f)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildah runs buildah on the vfs storage driver (no overlay in this
// sandbox; the images are a few files, so the copies vfs makes are small).
func buildah(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "buildah", append([]string{"--storage-driver", "vfs"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("buildah %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func lock(file string) (func(), error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	return func() { f.Close() }, nil
}

func writeFile(file string, b []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// Dir is where `make image` writes: $IMAGES_DIR, else bin/images.
func Dir(root string) string {
	if d := os.Getenv("IMAGES_DIR"); d != "" {
		return d
	}
	return filepath.Join(root, "bin", "images")
}

// ReadVersion returns the release version, the VERSION file's.
func ReadVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" || strings.ContainsAny(v, " \t\n:/") {
		return "", fmt.Errorf("VERSION %q: want a version like 0.1.0", v)
	}
	return v, nil
}

// Revision is the checkout's commit (HEAD), the images' revision label.
func Revision(root string) (string, error) {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse HEAD: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
