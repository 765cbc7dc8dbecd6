package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/admission"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
	"github.com/ramvault/ramvault/pkg/spec"
)

// goldenDir holds the golden cases, which are injector.Inject's: each
// <case>.yaml with its <case>.injected or <case>.err.
var goldenDir = filepath.Join("..", "testdata")

var update = flag.Bool("update", false, "rewrite the golden files under injector/testdata/")

// caseArgs are the flags of a golden case: the cluster defaults every case
// shares, then those of the input's `# flags:` line.
func caseArgs(input []byte) []string {
	args := []string{"--vault-addr=https://vault.vault.svc:8200"}
	for _, line := range strings.Split(string(input), "\n") {
		if rest, ok := strings.CutPrefix(line, "# flags:"); ok {
			args = append(args, strings.Fields(rest)...)
		}
	}
	return args
}

// TestGolden runs every injector/testdata/<case>.yaml through `ramvault
// inject` and compares the output with <case>.injected, or the errors with
// <case>.err. Each Pod of a case also goes through Inject directly, which
// must agree with the CLI, and every injection is checked against the
// invariants of injecttest.CheckInjection, both patches included.
// Regenerate with: go test ./injector/cli -update
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, input := range inputs {
		name := strings.TrimSuffix(filepath.Base(input), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			args := caseArgs(src)
			base := strings.TrimSuffix(input, ".yaml")

			var stdout, stderr bytes.Buffer
			code := RunCLI(context.Background(), append([]string{"inject", "-f", input}, args...), nil, &stdout, &stderr)
			var got []byte
			switch code {
			case exitOK:
				got = stdout.Bytes()
				compareGolden(t, base+".injected", base+".err", got)
			case exitInvalid:
				if stdout.Len() > 0 {
					t.Errorf("denied, yet printed:\n%s", stdout.String())
				}
				got = stderr.Bytes()
				compareGolden(t, base+".err", base+".injected", got)
			default:
				t.Fatalf("exit code %d:\n%s", code, stderr.String())
			}

			// lint reports the same problems, and prints nothing.
			var lintOut, lintErr bytes.Buffer
			if lc := RunCLI(context.Background(), append([]string{"lint", "-f", input}, args...), nil, &lintOut, &lintErr); lc != code || lintOut.Len() > 0 || !bytes.Equal(lintErr.Bytes(), stderr.Bytes()) {
				t.Errorf("lint: exit %d, stdout %q, stderr %q; inject: exit %d, stderr %q", lc, lintOut.String(), lintErr.String(), code, stderr.String())
			}

			checkPodsAgainstInject(t, src, args, code == exitOK, got)
		})
	}
}

// checkPodsAgainstInject runs each Pod of the input through Inject and checks
// that the CLI printed the same Pod, or the same errors.
func checkPodsAgainstInject(t *testing.T, src []byte, args []string, ok bool, cliOut []byte) {
	t.Helper()
	cfg, _, err := parseFlags("inject", append([]string{"-f", "x"}, args...), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := readDocuments(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	var outDocs []json.RawMessage
	if ok {
		if outDocs, err = readDocuments(bytes.NewReader(cliOut)); err != nil || len(outDocs) != len(docs) {
			t.Fatalf("the CLI printed %d documents (%v) for %d", len(outDocs), err, len(docs))
		}
	}
	for i, raw := range docs {
		obj, err := newObject(i+1, raw)
		if err != nil || obj.meta.Kind != "Pod" {
			continue
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
			t.Fatalf("%s: %v", obj.label, err)
		}
		out, err := injector.Inject(&pod, cfg)
		if err != nil {
			if ok {
				t.Fatalf("%s: the CLI injected it, Inject says: %v", obj.label, err)
			}
			var list spec.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("%s: error %v (%T), want a spec.ErrorList", obj.label, err, err)
			}
			for _, line := range obj.errorLines(err) {
				if !slices.Contains(strings.Split(string(cliOut), "\n"), line) {
					t.Errorf("Inject reports %q, the CLI does not:\n%s", line, cliOut)
				}
			}
			continue
		}
		if !ok {
			continue // the error was another object's
		}
		var printed corev1.Pod
		if err := yaml.UnmarshalStrict(outDocs[i], &printed); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(&printed, out) {
			a, _ := yaml.Marshal(out)
			b, _ := yaml.Marshal(&printed)
			t.Errorf("%s: Inject and the CLI disagree.\nInject:\n%s\nCLI:\n%s", obj.label, a, b)
		}
		injecttest.CheckInjection(t, &pod, out, cfg)
	}
}

// compareGolden compares got with the golden file want; the golden file of
// the other outcome must not exist. With -update it writes want and removes
// the other.
func compareGolden(t *testing.T, want, other string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(want, got, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(other); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("%s is stale: the case now gives %s (run go test ./injector/cli -update)", other, filepath.Ext(want))
	}
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%v (run go test ./injector/cli -update)", err)
	}
	if !bytes.Equal(data, got) {
		t.Errorf("%s is stale (run go test ./injector/cli -update); got:\n%s", want, got)
	}
}

// TestGoldenFilesHaveInputs fails on golden files whose input is gone; with
// -update it removes them.
func TestGoldenFilesHaveInputs(t *testing.T) {
	for _, pattern := range []string{"*.injected", "*.err", "vaultk8s/*.injected", "vaultk8s/*.err", "vaultk8s/*.inject-err", "vaultk8s/*.migrated"} {
		ext := filepath.Ext(pattern)
		files, err := filepath.Glob(filepath.Join(goldenDir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if _, err := os.Stat(strings.TrimSuffix(f, ext) + ".yaml"); err == nil {
				continue
			}
			if *update {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s has no input %s.yaml: remove it (or run go test ./injector/cli -update)", f, strings.TrimSuffix(filepath.Base(f), ext))
		}
	}
}

// TestHandlerGolden runs every Pod of the golden inputs through the webhook:
// the patch, applied to the object as sent, gives what Inject gives, and a
// denial says what Inject says. (TestGolden holds Inject to the CLI and the
// golden files.) The log names neither the Pod's images nor the patch.
func TestHandlerGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	var injected, denied int
	for _, input := range inputs {
		src, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := parseFlags("inject", append([]string{"-f", "x"}, caseArgs(src)...), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		docs, err := readDocuments(bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		for i, raw := range docs {
			obj, err := newObject(i+1, raw)
			if err != nil || obj.meta.Kind != "Pod" {
				continue
			}
			t.Run(strings.TrimSuffix(filepath.Base(input), ".yaml")+"/"+obj.label, func(t *testing.T) {
				var pod corev1.Pod
				if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
					t.Fatal(err)
				}
				want, wantErr := injector.Inject(&pod, cfg)
				var logs bytes.Buffer
				h := admission.NewHandler(cfg, admission.HandlerOptions{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
				resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-golden", raw, pod.Namespace)), "application/json"))
				switch {
				case wantErr != nil:
					denied++
					if resp.Allowed || resp.Result == nil || resp.Result.Message != wantErr.Error() {
						t.Errorf("response %+v, want the denial %q", resp, wantErr)
					}
				case apiequality.Semantic.DeepEqual(&pod, want):
					if !resp.Allowed || resp.Patch != nil {
						t.Errorf("response %+v, want allowed unchanged", resp)
					}
				default:
					injected++
					if !resp.Allowed {
						t.Fatalf("denied: %v", resp.Result)
					}
					if got := injecttest.ApplyPatch(t, resp, raw); !apiequality.Semantic.DeepEqual(got, want) {
						a, _ := yaml.Marshal(want)
						b, _ := yaml.Marshal(got)
						t.Errorf("the webhook's Pod differs from Inject's.\nInject:\n%s\nwebhook:\n%s", a, b)
					}
				}
				for _, c := range pod.Spec.Containers {
					if strings.Contains(logs.String(), c.Image) {
						t.Errorf("the log names the image %q of the Pod:\n%s", c.Image, logs.String())
					}
				}
				if strings.Contains(logs.String(), `"op"`) || strings.Contains(logs.String(), cfg.AgentImage) {
					t.Errorf("the log holds the patch:\n%s", logs.String())
				}
			})
		}
	}
	if injected == 0 || denied == 0 {
		t.Errorf("%d injected and %d denied Pods: the inputs should have both", injected, denied)
	}
}
