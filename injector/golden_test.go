package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/pkg/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

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

// TestGolden runs every testdata/<case>.yaml through `ramvault inject` and
// compares the output with <case>.injected, or the errors with <case>.err.
// Each Pod of a case also goes through Inject directly, which must agree with
// the CLI, and every injection is checked against the invariants of
// checkInjection. Regenerate with: go test ./injector -update
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
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
			case ExitOK:
				got = stdout.Bytes()
				compareGolden(t, base+".injected", base+".err", got)
			case ExitInvalid:
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

			checkPodsAgainstInject(t, src, args, code == ExitOK, got)
		})
	}
}

// checkPodsAgainstInject runs each Pod of the input through Inject and checks
// that the CLI printed the same Pod, or the same errors.
func checkPodsAgainstInject(t *testing.T, src []byte, args []string, ok bool, cliOut []byte) {
	t.Helper()
	opts, err := parseFlags("inject", append([]string{"-f", "x"}, args...), &bytes.Buffer{})
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
		out, err := Inject(&pod, opts.cfg)
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
		checkInjection(t, &pod, out, opts.cfg)
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
		t.Errorf("%s is stale: the case now gives %s (run go test ./injector -update)", other, filepath.Ext(want))
	}
	data, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("%v (run go test ./injector -update)", err)
	}
	if !bytes.Equal(data, got) {
		t.Errorf("%s is stale (run go test ./injector -update); got:\n%s", want, got)
	}
}

// TestGoldenFilesHaveInputs fails on golden files whose input is gone; with
// -update it removes them.
func TestGoldenFilesHaveInputs(t *testing.T) {
	for _, ext := range []string{".injected", ".err"} {
		files, err := filepath.Glob(filepath.Join("testdata", "*"+ext))
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
			t.Errorf("%s has no input %s.yaml: remove it (or run go test ./injector -update)", f, strings.TrimSuffix(filepath.Base(f), ext))
		}
	}
}

// checkInjection checks what must hold of every injection of in into out,
// whatever the Pod: the input is untouched, the agent containers pass Pod
// Security "restricted", names are unique, every mount has its volume, the
// patch reproduces out, and a second injection changes nothing.
func checkInjection(t *testing.T, in, out *corev1.Pod, cfg Config) {
	t.Helper()
	if _, was := in.Annotations[StatusAnnotation]; was || out.Annotations[StatusAnnotation] == "" {
		if !apiequality.Semantic.DeepEqual(in, out) {
			t.Fatal("a Pod that was not injected came out changed")
		}
		return
	}
	if out == in || &out.Spec.Containers[0] == &in.Spec.Containers[0] {
		t.Fatal("Inject did not copy the Pod")
	}
	// What the injector adds exists once (the input's own duplicates, which
	// the apiserver rejects, are not its business).
	agents := map[string]int{}
	for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
		if c.Name == AgentContainer || c.Name == AgentInitContainer {
			agents[c.Name]++
			checkRestricted(t, c)
		}
	}
	if len(agents) == 0 || agents[AgentContainer] > 1 || agents[AgentInitContainer] > 1 {
		t.Errorf("agent containers: %v", agents)
	}
	volumes := map[string]int{}
	for _, v := range out.Spec.Volumes {
		volumes[v.Name]++
	}
	for _, v := range []string{SecretsVolume, StateVolume, TokenVolume, PodInfoVolume} {
		if volumes[v] != 1 {
			t.Errorf("%d volumes named %q", volumes[v], v)
		}
	}
	for _, c := range slices.Concat(out.Spec.InitContainers, out.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if volumes[m.Name] == 0 {
				t.Errorf("container %q mounts volume %q, which does not exist", c.Name, m.Name)
			}
			if m.Name == SecretsVolume && c.Name != AgentContainer && c.Name != AgentInitContainer && !m.ReadOnly {
				t.Errorf("container %q mounts the secrets read-write", c.Name)
			}
			if (m.Name == TokenVolume || m.Name == StateVolume) && c.Name != AgentContainer && c.Name != AgentInitContainer {
				t.Errorf("app container %q mounts the agent's volume %q", c.Name, m.Name)
			}
		}
	}
	checkPatch(t, in, out)
	checkPatchStrict(t, in, out)
	again, err := Inject(out, cfg)
	if err != nil || !apiequality.Semantic.DeepEqual(again, out) {
		t.Errorf("a second injection changed the Pod (err %v)", err)
	}
}

// checkRestricted checks an agent container against Pod Security
// "restricted", and that it has requests and limits.
func checkRestricted(t *testing.T, c corev1.Container) {
	t.Helper()
	s := c.SecurityContext
	switch {
	case s == nil:
		t.Errorf("%s: no securityContext", c.Name)
	case s.RunAsNonRoot == nil || !*s.RunAsNonRoot || s.RunAsUser == nil || *s.RunAsUser < 1:
		t.Errorf("%s: may run as root", c.Name)
	case s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation:
		t.Errorf("%s: allows privilege escalation", c.Name)
	case s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities %v", c.Name, s.Capabilities)
	case s.SeccompProfile == nil || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: seccomp %v", c.Name, s.SeccompProfile)
	case s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem:
		t.Errorf("%s: writable root filesystem", c.Name)
	case s.Privileged != nil && *s.Privileged:
		t.Errorf("%s: privileged", c.Name)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: resources %v", c.Name, c.Resources)
	}
}

// checkPatchStrict checks that the webhook's patch for in, applied to in as
// JSON, gives out.
func checkPatchStrict(t *testing.T, in, out *corev1.Pod) {
	t.Helper()
	patch, err := patchStrict(shapeOf(in), out)
	if err != nil {
		t.Fatal(err)
	}
	checkApplies(t, "patchStrict", patch, in, out)
}

// checkPatch checks that Patch(in, out), applied to in, gives out.
func checkPatch(t *testing.T, in, out *corev1.Pod) {
	t.Helper()
	patch, err := Patch(in, out)
	if err != nil {
		t.Fatal(err)
	}
	checkApplies(t, "Patch", patch, in, out)
}

// checkApplies applies patch (made by the function named) to in and
// compares the result with out.
func checkApplies(t *testing.T, name string, patch []byte, in, out *corev1.Pod) {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode the %s patch: %v\n%s", name, err, patch)
	}
	orig, _ := json.Marshal(in)
	patched, err := p.Apply(orig)
	if err != nil {
		t.Fatalf("apply the %s patch: %v\n%s", name, err, patch)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(&got, out) {
		want, _ := json.Marshal(out)
		t.Errorf("the %s patch does not reproduce the mutated Pod:\npatched %s\nwant    %s\npatch   %s", name, patched, want, patch)
	}
}
