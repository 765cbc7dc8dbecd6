package cli

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/admission"
	"github.com/ramvault/ramvault/injector/internal/injecttest"
)

// vaultK8sDir holds manifests written for vault-k8s, from its and Vault's
// public documentation (each names its source): <case>.yaml, with
// `ramvault migrate`'s <case>.migrated or <case>.err, and `ramvault inject
// --vault-k8s-annotations`'s <case>.injected or <case>.inject-err.
var vaultK8sDir = filepath.Join(goldenDir, "vaultk8s")

// TestVaultK8sGolden runs each vault-k8s manifest through migrate, and
// through inject and lint with --vault-k8s-annotations; each Pod also
// through Inject and the webhook, which must agree, and the migrated
// manifest through inject without the flag, which must give the same Pod
// specs. Regenerate with: go test ./injector/cli -run VaultK8s -update
func TestVaultK8sGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(vaultK8sDir, "*.yaml"))
	if err != nil || len(inputs) < 25 {
		t.Fatalf("%d inputs (%v), want at least 25", len(inputs), err)
	}
	for _, input := range inputs {
		name := strings.TrimSuffix(filepath.Base(input), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(src, []byte("# source: http")) {
				t.Error("the input names no source (# source: <url>)")
			}
			base := strings.TrimSuffix(input, ".yaml")

			var mOut, mErr bytes.Buffer
			mCode := RunCLI(context.Background(), []string{"migrate", "-f", input}, nil, &mOut, &mErr)
			switch mCode {
			case exitOK:
				compareGolden(t, base+".migrated", base+".err", mOut.Bytes())
			case exitInvalid:
				if mOut.Len() > 0 {
					t.Errorf("migrate failed, yet printed:\n%s", mOut.String())
				}
				compareGolden(t, base+".err", base+".migrated", mErr.Bytes())
			default:
				t.Fatalf("migrate: exit code %d:\n%s", mCode, mErr.String())
			}

			args := append(caseArgs(src), "--vault-k8s-annotations")
			var stdout, stderr bytes.Buffer
			code := RunCLI(context.Background(), append([]string{"inject", "-f", input}, args...), nil, &stdout, &stderr)
			var got []byte
			switch code {
			case exitOK:
				got = stdout.Bytes()
				compareGolden(t, base+".injected", base+".inject-err", got)
			case exitInvalid:
				got = stderr.Bytes()
				compareGolden(t, base+".inject-err", base+".injected", got)
			default:
				t.Fatalf("inject: exit code %d:\n%s", code, stderr.String())
			}
			var lintOut, lintErr bytes.Buffer
			if lc := RunCLI(context.Background(), append([]string{"lint", "-f", input}, args...), nil, &lintOut, &lintErr); lc != code || !bytes.Equal(lintErr.Bytes(), stderr.Bytes()) {
				t.Errorf("lint: exit %d, stderr %q; inject: exit %d, stderr %q", lc, lintErr.String(), code, stderr.String())
			}
			checkPodsAgainstInject(t, src, args, code == exitOK, got)
			checkPodsThroughWebhook(t, src, args)

			// A manifest migrated by hand runs as the original served.
			if mCode == exitOK && code == exitOK {
				var again, againErr bytes.Buffer
				if c := RunCLI(context.Background(), append([]string{"inject", "-f", "-"}, caseArgs(src)...), bytes.NewReader(mOut.Bytes()), &again, &againErr); c != exitOK {
					t.Fatalf("the migrated manifest is denied:\n%s", againErr.String())
				}
				a, _ := readDocuments(bytes.NewReader(got))
				b, _ := readDocuments(bytes.NewReader(again.Bytes()))
				if len(a) != len(b) {
					t.Fatalf("%d documents served, %d migrated", len(a), len(b))
				}
				for i := range a {
					if x, y := podSpec(t, a[i]), podSpec(t, b[i]); !apiequality.Semantic.DeepEqual(x, y) {
						t.Errorf("document %d: served as it is and migrated, the Pod specs differ", i+1)
					}
				}
			}
		})
	}
}

// checkPodsThroughWebhook holds the webhook's answer for each Pod of src
// to Inject's.
func checkPodsThroughWebhook(t *testing.T, src []byte, args []string) {
	t.Helper()
	cfg, _, err := parseFlags("inject", append([]string{"-f", "x"}, args...), &bytes.Buffer{})
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
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
			t.Fatal(err)
		}
		want, wantErr := injector.Inject(&pod, cfg)
		h := admission.NewHandler(cfg, admission.HandlerOptions{Log: slog.New(slog.DiscardHandler)})
		resp := injecttest.Answer(t, injecttest.Post(h, injecttest.ReviewBody(t, injecttest.PodRequest("uid-vk", raw, pod.Namespace)), "application/json"))
		switch {
		case wantErr != nil:
			if resp.Allowed || resp.Result == nil || resp.Result.Message != wantErr.Error() {
				t.Errorf("%s: response %+v, want the denial %q", obj.label, resp, wantErr)
			}
		case apiequality.Semantic.DeepEqual(&pod, want):
			if !resp.Allowed || resp.Patch != nil {
				t.Errorf("%s: response %+v, want allowed unchanged", obj.label, resp)
			}
		default:
			if got := injecttest.ApplyPatch(t, resp, raw); !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("%s: the webhook's Pod differs from Inject's", obj.label)
			}
		}
	}
}

// podSpec is the Pod spec of a document (a Pod's, or its template's), or
// the document of another kind.
func podSpec(t *testing.T, doc []byte) any {
	t.Helper()
	obj, err := newObject(0, doc)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	gv, _ := schema.ParseGroupVersion(obj.meta.APIVersion)
	path, ok := templatePath(gv.WithKind(obj.meta.Kind).GroupKind())
	if !ok {
		return m
	}
	var cur any = m
	for _, p := range append(path, "spec") {
		mm, _ := cur.(map[string]any)
		cur = mm[p]
	}
	return cur
}
