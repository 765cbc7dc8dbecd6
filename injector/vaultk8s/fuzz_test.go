package vaultk8s

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/pkg/spec"
)

// Separators of the fuzzer's encoding of a Pod's annotations: records
// (ASCII RS) of key US value. Any byte string decodes, so no input is
// wasted on a syntax error.
const (
	recordSep = "\x1e"
	keySep    = "\x1f"
)

func encodeAnnotations(m map[string]string) []byte {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(k + keySep + m[k] + recordSep)
	}
	return b.Bytes()
}

func decodeAnnotations(data []byte) map[string]string {
	m := map[string]string{}
	for _, rec := range strings.Split(string(data), recordSep) {
		if k, v, ok := strings.Cut(rec, keySep); ok {
			m[k] = v
		}
	}
	return m
}

// podAnnotations are the annotations of the Pods in a golden input of
// injector/testdata/vaultk8s: a Pod's, or a workload's Pod template's.
func podAnnotations(t testing.TB, file string) map[string]string {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Metadata struct{ Annotations map[string]string }
		Spec     struct {
			Template struct {
				Metadata struct{ Annotations map[string]string }
			}
			JobTemplate struct {
				Spec struct {
					Template struct {
						Metadata struct{ Annotations map[string]string }
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	m := map[string]string{}
	maps.Copy(m, obj.Metadata.Annotations)
	maps.Copy(m, obj.Spec.Template.Metadata.Annotations)
	maps.Copy(m, obj.Spec.JobTemplate.Spec.Template.Metadata.Annotations)
	return m
}

// planted is appended to the value of every auth-config- annotation but
// role's before Translate: those are Vault Agent's auto-auth parameters,
// which for some methods are credentials (aws's secret_key and
// session_token), so no value of theirs may reach an error or the
// translation. The other values are configuration that anyone who may read
// the Pod (or the FailedCreate Event of its controller) reads anyway, and a
// denial quotes them to say what is wrong.
const planted = "\x00planted-auth-parameter\x00"

// FuzzTranslate feeds Translate arbitrary annotations, seeded with those of
// every golden input of injector/testdata/vaultk8s (beside the corpus in
// testdata/fuzz/FuzzTranslate). Translate must never panic nor change its
// input, must give the same answer twice, must never echo an auth
// parameter's value, and either
//   - denies with a non-empty spec.ErrorList, each error on an annotation
//     of the input (an over-long key cut to its first 63 characters and
//     "…") with a message; or
//   - returns ramvault.io/ annotations, each with the vault.hashicorp.com/
//     annotation it comes from, that spec.Parse accepts or denies with
//     errors that each name a ramvault.io/ annotation, so that the injector
//     can report them against what the user wrote.
func FuzzTranslate(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("..", "testdata", "vaultk8s", "*.yaml"))
	if len(inputs) == 0 {
		f.Fatal("no golden inputs in ../testdata/vaultk8s")
	}
	for _, in := range inputs {
		f.Add(encodeAnnotations(podAnnotations(f, in)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeAnnotations(data)
		plantable := !strings.Contains(string(data), planted)
		for k := range in {
			if p, ok := strings.CutPrefix(k, Prefix+"auth-config-"); ok && strings.ReplaceAll(p, "-", "_") != "role" && plantable {
				in[k] += planted
			}
		}
		before := maps.Clone(in)
		res, err := Translate(in)
		if !maps.Equal(in, before) {
			t.Fatal("Translate changed its input")
		}
		res2, err2 := Translate(in)
		if !reflect.DeepEqual(res, res2) || !reflect.DeepEqual(err, err2) {
			t.Fatalf("two answers to the same annotations:\n%v %v\n%v %v", res, err, res2, err2)
		}
		if plantable {
			if err != nil && strings.Contains(err.Error(), planted) {
				t.Fatalf("an auth parameter's value is in the error: %q", err)
			}
			for k, v := range res.Annotations {
				if strings.Contains(k+v, planted) {
					t.Fatalf("an auth parameter's value is in the translation: %q: %q", k, v)
				}
			}
		}
		if err != nil {
			var list spec.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T): want a non-empty spec.ErrorList", err, err)
			}
			for _, e := range list {
				if _, ok := in[e.Field]; !ok && !isCutKey(in, e.Field) {
					t.Fatalf("error on %q, which is not an annotation of the Pod: %v", e.Field, e)
				}
				if e.Message == "" {
					t.Fatalf("error without a message: %+v", e)
				}
			}
			return
		}
		if !slices.Equal(slices.Sorted(maps.Keys(res.Annotations)), slices.Sorted(maps.Keys(res.From))) {
			t.Fatalf("the translation's annotations %q and their origins %q differ", slices.Sorted(maps.Keys(res.Annotations)), slices.Sorted(maps.Keys(res.From)))
		}
		for k := range res.Annotations {
			if !strings.HasPrefix(k, spec.Prefix) || !strings.HasPrefix(res.From[k], Prefix) {
				t.Fatalf("%q (from %q): want a ramvault.io/ annotation from a vault.hashicorp.com/ one", k, res.From[k])
			}
		}
		if _, err := spec.Parse(res.Annotations); err != nil {
			var list spec.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("spec.Parse of the translation: %v (%T): want a non-empty spec.ErrorList", err, err)
			}
			for _, e := range list {
				if !strings.HasPrefix(e.Field, spec.Prefix) || e.Message == "" {
					t.Fatalf("spec.Parse of the translation: error %+v names no ramvault.io/ annotation", e)
				}
			}
		}
	})
}

// isCutKey says whether field is an over-long key of in, cut to its first
// 63 characters and "…" (the name part of a qualified name has at most 63).
func isCutKey(in map[string]string, field string) bool {
	cut, ok := strings.CutSuffix(field, "…")
	if !ok {
		return false
	}
	for k := range in {
		if strings.HasPrefix(k, cut) && len(k) > len(cut) && len(strings.TrimPrefix(cut, Prefix)) == spec.MaxNameLen {
			return true
		}
	}
	return false
}
