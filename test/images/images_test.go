package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/ramvault/ramvault/test/stack"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// built is what `make image` exported, read once per test binary.
type built struct {
	version, revision string
	df                *Dockerfile
	archives          map[string]*Archive // by product name
	refs              map[string][]Ref
}

func readBuilt(t *testing.T) *built {
	t.Helper()
	root := repoRoot(t)
	b := &built{archives: map[string]*Archive{}, refs: map[string][]Ref{}}
	var err error
	if b.version, err = ReadVersion(root); err != nil {
		t.Fatal(err)
	}
	if b.revision, err = Revision(root); err != nil {
		t.Fatal(err)
	}
	if b.df, err = ReadDockerfile(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range Products() {
		f := filepath.Join(Dir(root), p.Name+".tar")
		a, err := ReadArchive(f)
		if err != nil {
			t.Fatalf("%v (run `make image`)", err)
		}
		refs, err := a.Refs()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b.archives[p.Name], b.refs[p.Name] = a, refs
	}
	return b
}

// TestImagesAreMultiPlatformLabelledAndAsTheDockerfileSays opens each
// archive of `make image`: one OCI index tagged VERSION and dev, with a
// linux/amd64 and a linux/arm64 image; the OCI labels (index annotations and
// each image's config) naming the source, VERSION and this checkout's
// commit; each image's user, entrypoint and files those of its Dockerfile
// stage, the agent binary execute-only and root's; each binary built for
// its platform, statically, with -trimpath and (amd64 run here) VERSION
// stamped in.
func TestImagesAreMultiPlatformLabelledAndAsTheDockerfileSays(t *testing.T) {
	b := readBuilt(t)
	wantLabels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/ramvault/ramvault",
		"org.opencontainers.image.version":  b.version,
		"org.opencontainers.image.revision": b.revision,
	}
	for _, p := range Products() {
		t.Run(p.Name, func(t *testing.T) {
			refs := b.refs[p.Name]
			var names []string
			for _, r := range refs {
				names = append(names, r.Name)
				if r.Index.MediaType != MediaIndex {
					t.Errorf("%s is %q, want an OCI image index", r.Name, r.Index.MediaType)
				}
			}
			want := []string{"localhost/" + p.Name + ":" + b.version, "localhost/" + p.Name + ":" + DevTag}
			if !slices.Equal(names, want) {
				t.Fatalf("archive names %q, want %q", names, want)
			}
			if refs[0].Images[0].Digest != refs[1].Images[0].Digest {
				t.Errorf("the %s and %s tags name different images", want[0], want[1])
			}
			for k, v := range wantLabels {
				if got := refs[0].Index.Annotations[k]; got != v {
					t.Errorf("index annotation %s = %q, want %q (archives older than the checkout? `make image`)", k, got, v)
				}
			}
			st := b.df.Stages[p.Target]
			var plats []string
			for _, im := range refs[0].Images {
				plats = append(plats, im.Platform.String())
				checkImage(t, b, st, im, wantLabels)
			}
			if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(plats, want) {
				t.Errorf("platforms %q, want %q", plats, want)
			}
		})
	}
}

func checkImage(t *testing.T, b *built, st *Stage, im Image, labels map[string]string) {
	t.Helper()
	c := im.Config.Config
	for k, v := range labels {
		if c.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", im.Platform, k, c.Labels[k], v)
		}
	}
	if c.User != st.User || c.User != "65532:65532" {
		t.Errorf("%s: user %q, want the Dockerfile's %q (65532:65532)", im.Platform, c.User, st.User)
	}
	if !slices.Equal(c.Entrypoint, st.Entrypoint) || len(c.Cmd) != 0 {
		t.Errorf("%s: entrypoint %q cmd %q, want the Dockerfile's %q and no cmd", im.Platform, c.Entrypoint, c.Cmd, st.Entrypoint)
	}
	files, err := im.Files()
	if err != nil {
		t.Fatal(err)
	}
	var regular []string
	for name, e := range files {
		if e.Header.Typeflag == tar.TypeReg {
			regular = append(regular, "/"+name)
		}
	}
	var wantFiles []string
	for _, f := range st.Files {
		wantFiles = append(wantFiles, f.Dst)
		e, ok := files[strings.TrimPrefix(f.Dst, "/")]
		if !ok {
			continue
		}
		h := e.Header
		if f.Mode != 0 && os.FileMode(h.Mode)&os.ModePerm != f.Mode {
			t.Errorf("%s: %s mode %04o, want the Dockerfile's --chmod=%04o", im.Platform, f.Dst, h.Mode&0o7777, f.Mode)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want 0:0 (COPY's default)", im.Platform, f.Dst, h.Uid, h.Gid)
		}
		if strings.HasPrefix(f.Src, "/out/") {
			checkBinary(t, b, im.Platform, f.Dst, e.Data)
		}
	}
	slices.Sort(regular)
	slices.Sort(wantFiles)
	if !slices.Equal(regular, wantFiles) {
		t.Errorf("%s: files %q, want the Dockerfile's %q", im.Platform, regular, wantFiles)
	}
	if st.Name == "agent" {
		e := files["ramvault-agent"]
		if e.Header == nil || e.Header.Mode&0o7777 != 0o111 || e.Header.Uid != 0 {
			t.Errorf("%s: /ramvault-agent must be execute-only (0111) and root's: %+v", im.Platform, e.Header)
		}
	}
}

func checkBinary(t *testing.T, b *built, p Platform, name string, data []byte) {
	t.Helper()
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %s: %v", p, name, err)
		return
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	if set["GOOS"] != p.OS || set["GOARCH"] != p.Architecture || set["CGO_ENABLED"] != "0" || set["-trimpath"] != "true" {
		t.Errorf("%s: %s built with GOOS=%s GOARCH=%s CGO_ENABLED=%s -trimpath=%s", p, name, set["GOOS"], set["GOARCH"], set["CGO_ENABLED"], set["-trimpath"])
	}
	// -trimpath leaves -ldflags out of the build information: the stamped
	// version is checked by running the binary (amd64 here, arm64 under qemu).
	if p.Architecture != "amd64" || name == "/example-app" {
		return
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(bin, data, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if want := filepath.Base(name) + " " + b.version; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("%s: %s --version: %v %q, want %q", p, name, err, out, want)
	}
}

// TestSBOMListsEachImagesModules: beside each archive, a CycloneDX SBOM
// naming the image and VERSION; for each platform, each Go binary of the
// image (its SHA-256 that of the file in the image) with its Go version and
// GOARCH and every module linked in, each with its go.sum hash: the agent's
// among them the Vault API client at go.mod's version with go.sum's hash.
func TestSBOMListsEachImagesModules(t *testing.T) {
	b := readBuilt(t)
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	const vaultAPI = "github.com/hashicorp/vault/api"
	var vaultVersion string
	for _, r := range mf.Require {
		if r.Mod.Path == vaultAPI {
			vaultVersion = r.Mod.Version
		}
	}
	gosum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(vaultAPI+" "+vaultVersion) + ` (h1:\S+)$`).FindSubmatch(gosum)
	if vaultVersion == "" || m == nil {
		t.Fatalf("go.mod/go.sum have no %s", vaultAPI)
	}
	vaultSum := string(m[1])
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}

	for _, p := range Products() {
		t.Run(p.Name, func(t *testing.T) {
			bom, err := ReadSBOM(filepath.Join(Dir(root), p.Name+".sbom.json"))
			if err != nil {
				t.Fatal(err)
			}
			mc := bom.Metadata.Component
			if bom.BOMFormat != "CycloneDX" || mc.Type != "container" || mc.Name != "localhost/"+p.Name || mc.Version != b.version ||
				mc.Prop("org.opencontainers.image.revision") != b.revision {
				t.Errorf("SBOM metadata %+v, want a CycloneDX BOM of container localhost/%s %s at %s", mc, p.Name, b.version, b.revision)
			}
			apps := map[string]Component{} // by platform:path
			for _, c := range bom.Components {
				if c.Type == "application" {
					apps[c.Prop("platform")+":"+c.Prop("path")] = c
				}
			}
			st := b.df.Stages[p.Target]
			for _, im := range b.refs[p.Name][0].Images {
				files, err := im.Files()
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range st.Files {
					if !strings.HasPrefix(f.Src, "/out/") {
						continue
					}
					app, ok := apps[im.Platform.String()+":"+f.Dst]
					if !ok {
						t.Errorf("SBOM has no application %s for %s", f.Dst, im.Platform)
						continue
					}
					sum := sha256.Sum256(files[strings.TrimPrefix(f.Dst, "/")].Data)
					if len(app.Hashes) != 1 || app.Hashes[0].Content != hex.EncodeToString(sum[:]) {
						t.Errorf("%s %s: SBOM hash %v is not the image's binary's (%x)", im.Platform, f.Dst, app.Hashes, sum)
					}
					if app.Prop("go:version") != strings.TrimSpace(string(goVersion)) || app.Prop("go:build:GOARCH") != im.Platform.Architecture {
						t.Errorf("%s %s: go:version %q GOARCH %q, want %s %s", im.Platform, f.Dst, app.Prop("go:version"),
							app.Prop("go:build:GOARCH"), goVersion, im.Platform.Architecture)
					}
					if len(app.Components) == 0 {
						t.Errorf("%s %s: no modules listed", im.Platform, f.Dst)
					}
					found := false
					for _, c := range app.Components {
						if c.Name == "" || c.Version == "" || !strings.HasPrefix(c.Prop("go:sum"), "h1:") {
							t.Errorf("%s %s: module without path, version or sum: %+v", im.Platform, f.Dst, c)
						}
						found = found || c.Name == vaultAPI && c.Version == vaultVersion && c.Prop("go:sum") == vaultSum &&
							c.PURL == "pkg:golang/"+vaultAPI+"@"+vaultVersion
					}
					// The agent is the binary that talks to Vault.
					if !found && p.Target == "agent" {
						t.Errorf("%s %s: SBOM does not list %s %s %s", im.Platform, f.Dst, vaultAPI, vaultVersion, vaultSum)
					}
				}
			}
		})
	}
}

// TestArm64AgentRunsUnderQemu runs the agent binary of the arm64 image under
// qemu-aarch64-static (Debian's qemu-user-static): its version, a flag
// error, then a real init-mode run against the stack's Vault that writes a
// KV secret to tmpfs.
func TestArm64AgentRunsUnderQemu(t *testing.T) {
	b := readBuilt(t)
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatal("no qemu-aarch64-static: run `make deps` (Debian's qemu-user-static)")
	}
	var agent []byte
	for _, im := range b.refs["ramvault-agent"][0].Images {
		if im.Platform.Architecture == "arm64" {
			files, err := im.Files()
			if err != nil {
				t.Fatal(err)
			}
			agent = files["ramvault-agent"].Data
		}
	}
	if agent == nil {
		t.Fatal("no /ramvault-agent in the arm64 image")
	}
	bin := filepath.Join(t.TempDir(), "ramvault-agent")
	if err := os.WriteFile(bin, agent, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, qemu, append([]string{bin}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("qemu-aarch64-static ramvault-agent %s: %v", strings.Join(args, " "), err)
		}
		return string(out), code
	}
	if out, code := run("--version"); code != 0 || strings.TrimSpace(out) != "ramvault-agent "+b.version {
		t.Errorf("--version: exit %d, %q; want ramvault-agent %s", code, out, b.version)
	}
	if out, code := run("--mode=init"); code != 2 || !strings.Contains(out, "no annotations: give --spec") {
		t.Errorf("--mode=init alone: exit %d, %q; want 2 and the missing --spec error", code, out)
	}

	env := stack.Require(t)
	vc, err := env.VaultClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := fmt.Sprintf("images-qemu-%d", time.Now().UnixNano())
	value := "arm64-" + path
	if _, err := vc.KVv2("secret").Put(ctx, path, map[string]any{"password": value}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.KVv2("secret").DeleteMetadata(ctx, path) })
	shm := func(pattern string) string {
		d, err := os.MkdirTemp("/dev/shm", pattern)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	secrets, state, conf := shm("images-secrets-"), shm("images-state-"), t.TempDir()
	tokenFile, annFile := filepath.Join(conf, "token"), filepath.Join(conf, "annotations")
	if err := os.WriteFile(tokenFile, []byte(env.VaultToken), 0o600); err != nil {
		t.Fatal(err)
	}
	ann := fmt.Sprintf("ramvault.io/secret-db=%q\nramvault.io/key-db=\"password\"\n", "secret/data/"+path)
	if err := os.WriteFile(annFile, []byte(ann), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := run("--mode=init", "--vault-addr="+env.VaultAddr, "--vault-token-file="+tokenFile, "--annotations="+annFile,
		"--secrets-dir="+secrets, "--state-dir="+state, "--log-format=text", "--init-deadline=30s")
	if code != 0 {
		t.Fatalf("init run under qemu: exit %d\n%s", code, out)
	}
	got, err := os.ReadFile(filepath.Join(secrets, "db"))
	if err != nil || string(got) != value {
		t.Fatalf("secret file db: %v (content matches: %v)\nagent output:\n%s", err, string(got) == value, out)
	}
	if strings.Contains(out, value) || strings.Contains(out, env.VaultToken) {
		t.Errorf("the agent's output shows the secret or the token")
	}
	t.Logf("arm64 agent under qemu wrote secret/data/%s; output:\n%s", path, out)
}

// TestDockerfileAndMakefileBuildAlike: `make build` stamps the version as
// the Dockerfile's go build line does, and the Dockerfile's final stages
// are what the builder accepts.
func TestDockerfileAndMakefileBuildAlike(t *testing.T) {
	root := repoRoot(t)
	df, err := ReadDockerfile(root)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS := (.*)$`).FindSubmatch(mk)
	if m == nil || strings.ReplaceAll(string(m[1]), "$(VERSION)", "${VERSION}") != df.LDFlags || !df.Trimpath {
		t.Errorf("Makefile LDFLAGS %q, Dockerfile go build -ldflags %q (-trimpath %v): keep them the same", m, df.LDFlags, df.Trimpath)
	}
	for _, p := range Products() {
		if df.Stages[p.Target] == nil {
			t.Errorf("Dockerfile has no stage %s", p.Target)
		}
	}
	if want := []string{"./cmd/ramvault", "./cmd/ramvault-agent", "./examples/app"}; !slices.Equal(df.Packages, want) {
		t.Errorf("Dockerfile builds %q, want %q", df.Packages, want)
	}
}
