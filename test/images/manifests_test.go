package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// ourImage matches a reference to one of the images `make image` builds,
// its tag (if any) in group 2.
var ourImage = regexp.MustCompile(`localhost/(ramvault(?:-agent|-example-app)?)(?::([\w.-]+))?`)

// devOnly are the manifests that run the images' mutable dev tag: the local
// stack's and kind's. Everything else names the release.
func devOnly(rel string) bool {
	for _, p := range []string{"manifests/overlays/dev/", "manifests/overlays/kind/",
		"manifests/chart/ramvault/examples/dev.yaml", "manifests/chart/ramvault/examples/kind.yaml"} {
		if strings.HasPrefix(rel, p) {
			return true
		}
	}
	return false
}

// badRefs returns the references to our images in text whose tag is not
// want (:dev, :latest or no tag in a manifest a cluster would run), and how
// many references there are.
func badRefs(where, text, want string) (bad []string, n int) {
	for _, m := range ourImage.FindAllStringSubmatch(text, -1) {
		n++
		if m[2] != want {
			bad = append(bad, fmt.Sprintf("%s names %s: want localhost/%s:%s (VERSION; only the dev and kind overlays run :%s)", where, m[0], m[1], want, DevTag))
		}
	}
	return bad, n
}

func checkRefs(t *testing.T, where, text, want string) int {
	t.Helper()
	bad, n := badRefs(where, text, want)
	for _, b := range bad {
		t.Error(b)
	}
	return n
}

// TestManifestsNameTheVersion: the base, every overlay, the chart's defaults
// and its values examples, and the examples name the images by VERSION,
// never :dev, :latest or no tag, but for the dev and kind overlays (and the
// chart's dev and kind values), which name :dev. Both the files as written
// and as rendered (kubectl kustomize, helm template) are checked; the chart's
// appVersion, the tag its images default to, is VERSION.
func TestManifestsNameTheVersion(t *testing.T) {
	root := repoRoot(t)
	version, err := ReadVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	want := func(rel string) string {
		if devOnly(rel) {
			return DevTag
		}
		return version
	}

	// As written (the chart's values and kustomize's images: transformers
	// name no tag: checked rendered below).
	for _, top := range []string{"manifests", "examples"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".yaml") {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if filepath.Base(p) == "kustomization.yaml" ||
				strings.HasPrefix(rel, "manifests/chart/ramvault/") && !strings.HasPrefix(rel, "manifests/chart/ramvault/examples/") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			checkRefs(t, rel, string(b), want(rel))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Rendered.
	bin := filepath.Join(root, "bin")
	dirs := []string{"manifests", "manifests/base"}
	overlays, _ := filepath.Glob(filepath.Join(root, "manifests/overlays/*"))
	for _, o := range overlays {
		rel, _ := filepath.Rel(root, o)
		dirs = append(dirs, rel+"/")
	}
	for _, d := range dirs {
		out, err := exec.Command(filepath.Join(bin, "kubectl"), "kustomize", filepath.Join(root, d)).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", d, err, out)
		}
		if n := checkRefs(t, "kubectl kustomize "+d, string(out), want(d)); n < 2 {
			t.Errorf("kubectl kustomize %s names %d of our images, want the webhook's and the agent's", d, n)
		}
	}
	chart := filepath.Join(root, "manifests/chart/ramvault")
	b, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.AppVersion != version {
		t.Errorf("Chart.yaml appVersion %q, want VERSION %q (the chart's images default to it)", meta.AppVersion, version)
	}
	examples, _ := filepath.Glob(filepath.Join(chart, "examples/*.yaml"))
	for _, values := range append([]string{""}, examples...) {
		args := []string{"template", "ramvault", chart, "--namespace", "ramvault-system"}
		where, rel := "helm template (default values)", "manifests/chart/ramvault/values.yaml"
		if values != "" {
			args = append(args, "-f", values)
			rel, _ = filepath.Rel(root, values)
			where = "helm template -f " + rel
		}
		out, err := exec.Command(filepath.Join(bin, "helm"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", where, err, out)
		}
		if n := checkRefs(t, where, string(out), want(rel)); n < 2 {
			t.Errorf("%s names %d of our images, want the webhook's and the agent's", where, n)
		}
	}
}

// The check itself: a manifest naming :dev, :latest or no tag fails.
func TestCheckRefsCatchesMutableTags(t *testing.T) {
	for _, text := range []string{"image: localhost/ramvault:dev", "image: localhost/ramvault-agent:latest",
		"agent-image: localhost/ramvault-agent\n", "image: localhost/ramvault-example-app:0.0.9"} {
		if bad, n := badRefs("x", text, "0.1.0"); len(bad) != 1 || n != 1 {
			t.Errorf("%q: %d references, rejected %q", text, n, bad)
		}
	}
	if bad, n := badRefs("ok", "image: localhost/ramvault:0.1.0\nagent-image: localhost/ramvault-agent:0.1.0", "0.1.0"); n != 2 || bad != nil {
		t.Errorf("found %d references, rejected %q; want 2, none", n, bad)
	}
}
