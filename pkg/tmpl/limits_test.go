package tmpl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Adversarial templates: each must end with a limit error (not hang, not
// allocate gigabytes). go test's own timeout is the hang detector; nothing
// here asserts on time.
func TestAdversarialTemplatesHitALimit(t *testing.T) {
	big := make([]any, 1000)
	for i := range big {
		big[i] = "x"
	}
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	dot := &Secret{Data: map[string]any{"n": "1000000000", "list": big, "deep": deep, "s": strings.Repeat("a", 1<<16)}}
	dag := `{{ define "l0" }}x{{ end }}`
	for i := 1; i <= 40; i++ {
		dag += `{{ define "l` + itoa(int64(i)) + `" }}{{ template "l` + itoa(int64(i-1)) + `" }}{{ template "l` + itoa(int64(i-1)) + `" }}{{ end }}`
	}
	dag += `{{ template "l40" }}`
	for _, c := range []struct {
		name, src string
		want      error
	}{
		{"a range of 10^9 from the data", `{{ range loop (parseInt .Data.n) }}{{ end }}`, ErrStepLimit},
		{"a range over an integer from the data", `{{ range (parseInt .Data.n) }}{{ end }}`, ErrStepLimit},
		{"three nested ranges over 1000 elements", `{{ range .Data.list }}{{ range $.Data.list }}{{ range $.Data.list }}{{ end }}{{ end }}{{ end }}`, ErrStepLimit},
		{"a template calling another twice, 40 levels deep", dag, ErrStepLimit},
		{"writing gigabytes", `{{ range loop (parseInt "1000000") }}{{ $.Data.s }}{{ end }}`, ErrOutputLimit},
		{"replaceAll squaring a string", `{{ $s := "aaaaaaaa" }}{{ $s = replaceAll "a" $s $s }}{{ $s = replaceAll "a" $s $s }}{{ $s = replaceAll "a" $s $s }}{{ $s = replaceAll "a" $s $s }}`, ErrOutputLimit},
		{"regexReplaceAll growing a string", `{{ regexReplaceAll "" .Data.s .Data.s }}`, ErrOutputLimit},
		{"a huge printf width", `{{ printf "%999999999d" 1 }}`, ErrOutputLimit},
		{"a huge printf star width", `{{ printf "%*d" 999999999 1 }}`, ErrOutputLimit},
		{"a huge precision", `{{ printf "%.999999999f" 1.0 }}`, ErrOutputLimit},
		{"a huge indent", `{{ indent 999999999 "a\nb" }}`, ErrOutputLimit},
		{"join with a huge separator", `{{ join .Data.s (split "," (printf "%s" (replaceAll "a" "," .Data.s))) }}`, ErrOutputLimit},
		{"pretty JSON of deep data", `{{ toJSONPretty (parseJSON .Data.deep) }}`, ErrOutputLimit},
		{"values built but never written", `{{ range loop 1000 }}{{ $x := printf "%s%s" $.Data.s $.Data.s }}{{ end }}`, ErrWorkLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A minute, so the step and size limits under test come first
			// even on a loaded machine.
			tp, err := Parse("t", c.src, Options{Limits: Limits{Time: time.Minute, Steps: 100_000}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = tp.Execute(Input{Dot: dot})
			if !errors.Is(err, c.want) || !errors.Is(err, ErrLimit) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Template != "t" {
				t.Fatalf("err %v is not an *Error naming the template", err)
			}
		})
	}
}

func TestTimeLimit(t *testing.T) {
	tp, err := Parse("t", `{{ range loop 1000000 }}{{ sha256Hex "x" }}{{ end }}`, Options{Limits: Limits{Time: time.Millisecond, Steps: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Execute(Input{})
	if !errors.Is(err, ErrTimeLimit) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "time limit (1ms)") {
		t.Fatal(err)
	}
}

func TestStepLimitNamesTheRange(t *testing.T) {
	tp, err := Parse("t", "ok\n  {{ range loop (parseInt \"100000000\") }}{{ end }}", Options{Limits: Limits{Time: time.Minute, Steps: 100_000}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Execute(Input{})
	if err == nil || !strings.HasPrefix(err.Error(), "t:2:12: at <range>: the render exceeds the step limit") {
		t.Fatalf("err = %v", err)
	}
}

func TestLimitsLeaveNormalTemplatesAlone(t *testing.T) {
	list := make([]any, 10000)
	for i := range list {
		list[i] = map[string]any{"k": "v"}
	}
	out, err := mustParse(t, `{{ range $i, $e := .Data.list }}{{ $i }}={{ $e.k | toUpper }}{{ end }}`).Execute(Input{Dot: &Secret{Data: map[string]any{"list": list}}})
	if err != nil || len(out) < 10000 {
		t.Fatalf("%d bytes, %v", len(out), err)
	}
}
