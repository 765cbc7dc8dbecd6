package render

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

var (
	errTooLarge = errors.New("output too large")
	errTooSlow  = errors.New("render took too long")
)

// limitedBuffer is a template's output: at most max bytes, and no more
// writes once the render was given up (so an abandoned execution stops at
// its next write).
type limitedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	max     int
	stopped bool
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return 0, errTooSlow
	}
	if w.b.Len()+len(p) > w.max {
		return 0, errTooLarge
	}
	return w.b.Write(p)
}

func (w *limitedBuffer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// execute runs the template within the limits. Its errors name the
// template, the position and the field, never a value: text/template's own
// messages can carry one ("range can't iterate over <value>", an error a
// function returned), and render errors are logged at every retry and can
// end in a container's termination message.
func (r *Renderer) execute(dot templateData) ([]byte, error) {
	out := &limitedBuffer{max: r.limits.MaxBytes}
	done := make(chan error, 1)
	go func() { done <- r.tmpl.Execute(out, dot) }()
	t := r.limits.Clock.NewTimer(r.limits.Timeout)
	var err error
	select {
	case err = <-done:
		t.Stop()
	case <-t.C:
		out.stop()
		return nil, fmt.Errorf("render template of secret %q: not rendered within %s; simplify ramvault.io/template-%s", r.secret.Name, r.limits.Timeout, r.secret.Name)
	}
	switch {
	case err == nil:
		return out.b.Bytes(), nil
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("render template of secret %q: output over %d bytes; a secret file should be far smaller", r.secret.Name, r.limits.MaxBytes)
	}
	return nil, fmt.Errorf("render template of secret %q: %s", r.secret.Name, safeExecError(err, r.secret.Template))
}

// execPrefix is how text/template starts an execution error: the location,
// the template's name and the node (template source, never data).
var execPrefix = regexp.MustCompile(`(?s)^template: (\S+?:\d+:\d+): executing "[^"]*" at <(.*?)>: (.*)$`)

// goType is a Go type as reflect spells it (interface {}, []string, map[string]interface {}).
const goType = `[\w.*\[\]]+( \{\})?`

// safeMessages are execution errors that carry no value: names from the
// template source and Go types only.
var safeMessages = []*regexp.Regexp{
	regexp.MustCompile(`^map has no entry for key "[^"]*"$`),
	regexp.MustCompile(`^can't evaluate field \w+ in type ` + goType + `$`),
	regexp.MustCompile(`^nil pointer evaluating ` + goType + `\.\w+$`),
	regexp.MustCompile(`^wrong type for value; expected ` + goType + `; got ` + goType + `$`),
	regexp.MustCompile(`^wrong number of args for \w+: want \d+ got \d+$`),
	regexp.MustCompile(`^exceeded maximum template depth \(\d+\)$`),
	regexp.MustCompile(`^error calling pem(Cert|Key|Chain): no "(certificate|private_key)" in the secret \(is it a PKI issue response\?\)$`),
}

// safeExecError describes an execution error without the parts that can
// hold a value. A key named in a message is kept only if the template's
// source names it too.
func safeExecError(err error, source string) string {
	m := execPrefix.FindStringSubmatch(err.Error())
	if m == nil {
		return "execution failed (details not shown: they may hold secret values)"
	}
	at := fmt.Sprintf("at %s, <%s>", m[1], m[2])
	msg := m[3]
	for _, re := range safeMessages {
		if re.MatchString(msg) && quotedNamesIn(msg, source) {
			return at + ": " + msg
		}
	}
	switch {
	case strings.HasPrefix(msg, "range can't iterate over "):
		return at + ": range can't iterate over this value (not shown)"
	case strings.HasPrefix(msg, "error calling "):
		fn, _, _ := strings.Cut(strings.TrimPrefix(msg, "error calling "), ":")
		return fmt.Sprintf("%s: error calling %s (its message is not shown: it may hold secret values)", at, fn)
	}
	return at + ": execution failed (details not shown: they may hold secret values)"
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// quotedNamesIn reports whether every quoted name in msg appears in source.
func quotedNamesIn(msg, source string) bool {
	for _, q := range quoted.FindAllStringSubmatch(msg, -1) {
		if q[1] == "certificate" || q[1] == "private_key" {
			continue
		}
		if !strings.Contains(source, q[1]) {
			return false
		}
	}
	return true
}
