package tmpl

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"text/template"
)

// Error is one problem of one template. Its text holds the template name,
// the position, the expression as written in the template and a reason; it
// never holds a secret value.
type Error struct {
	Template  string
	Line, Col int    // 1-based; 0 when unknown
	Context   string // the expression from the template source, e.g. `.Data.password`
	Msg       string
	Err       error // the cause, for errors.Is (never printed)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Template)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Context != "" {
		b.WriteString("at <" + e.Context + ">: ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem Parse found, in source order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

var (
	// ErrLimit is matched (errors.Is) by every limit error.
	ErrLimit = errors.New("render limit exceeded")
	// ErrOutputLimit: the output would exceed Limits.Output.
	ErrOutputLimit = fmt.Errorf("%w: output", ErrLimit)
	// ErrWorkLimit: function calls would produce more than Limits.Work bytes.
	ErrWorkLimit = fmt.Errorf("%w: work", ErrLimit)
	// ErrStepLimit: the render took more than Limits.Steps steps.
	ErrStepLimit = fmt.Errorf("%w: steps", ErrLimit)
	// ErrTimeLimit: the render took longer than Limits.Time.
	ErrTimeLimit = fmt.Errorf("%w: time", ErrLimit)
)

// safeError is an error whose text was built from template source, types and
// constants only. Functions of this package return nothing else.
type safeError struct {
	msg string
	err error // cause, never printed
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

func safef(format string, args ...any) error { return &safeError{msg: fmt.Sprintf(format, args...)} }

// syntaxError turns a text/template parse error into an *Error. Parse errors
// quote only the template source.
func syntaxError(name string, err error) *Error {
	e := &Error{Template: name, Msg: err.Error(), Err: err}
	if m := errorForms().parseErr.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[2])
		e.Msg = m[3]
		// The parse name may carry ":line:col"-like text of its own; keep ours.
		if strings.HasPrefix(e.Msg, "function ") && strings.Contains(e.Msg, "not defined") {
			e.Msg += didYouMean(strings.Split(e.Msg, "\"")[1])
		}
	}
	e.Msg = "syntax: " + e.Msg
	return e
}

// text/template's execution errors read
//
//	template: NAME:LINE:COL: executing "NAME" at <CONTEXT>: REASON
//
// (the only structure it offers: it has no error type with the node). LINE,
// COL and CONTEXT come from the source. REASON can embed a value (`range can't
// iterate over <value>`, `if/with can't use <value>`, index out of range: N),
// so it is kept only when it matches one of the value-free forms below, and
// otherwise replaced by a generic reason.

// reasonForm is an error reason's form and its value-free replacement.
type reasonForm struct {
	re   *regexp.Regexp
	repl string
}

// forms are the regular expressions that read text/template's errors. They
// are compiled at the first error, not at start-up: the agent starts in every
// Pod and most never see a template error (compiling them all costs about
// half a millisecond and 370 KB of heap).
type forms struct {
	parseErr, execErr *regexp.Regexp
	// safe are reasons that quote only source, types and constants.
	safe []*regexp.Regexp
	// value are reasons that embed a value, each with its value-free
	// replacement.
	value []reasonForm
	// builtin are the value-free parts of text/template's own function
	// errors ("error calling index: index out of range: 7" loses the 7).
	builtin []reasonForm
}

var errorForms = sync.OnceValue(func() *forms {
	c := regexp.MustCompile
	return &forms{
		parseErr: c(`^template: (.*?):(\d+): (.*)$`),
		execErr:  c(`(?s)^template: .*?:(\d+):(\d+): executing "[^"]*" at <(.*?)>: (.*)$`),
		safe: []*regexp.Regexp{
			c(`^map has no entry for key "[^"]*"$`),
			c(`^nil data; no entry for key "[^"]*"$`),
			c(`^can't evaluate field \w+ in type [\w.*\[\]{} ]+$`),
			c(`^nil pointer evaluating [\w.*\[\]{} ]+\.\w+$`),
			c(`^wrong number of args for \w+: want (at least )?\d+ got \d+$`),
			c(`^wrong type for value; expected [\w.*\[\]{} ]+; got [\w.*\[\]{} ]+$`),
			c(`^invalid value; expected [\w.*\[\]{} ]+$`),
			c(`^template "[^"]*" not defined$`),
			c(`^exceeded maximum template depth \(\d+\)$`),
			c(`^undefined variable: \$\w*$`),
			c(`^"[^"]*" is not a defined function$`),
			c(`^\w+ is an unexported field of struct type [\w.*\[\]{} ]+$`),
			c(`^\w+ is not a method but has arguments$`),
			c(`^\w+ has arguments but cannot be invoked as function$`),
			c(`^dereference of nil pointer of type [\w.*\[\]{} ]+$`),
			c(`^cannot assign nil to [\w.*\[\]{} ]+$`),
			c(`^indirection through explicit nil in .*$`),
		},
		value: []reasonForm{
			{c(`(?s)^range can't iterate over `), "range can't iterate over this value (not a list, map or integer)"},
			{c(`(?s)^if/with can't use `), "if/with can't use this value"},
			{c(`(?s)^can't use .* (to )?iterate over more than one variable$`), "this value can't be ranged over with two variables"},
			{c(`(?s)^range over send-only channel`), "range over a send-only channel"},
			{c(`(?s)^can't print .* of type `), "this value can't be printed"},
		},
		builtin: []reasonForm{
			{c(`(?s)^index out of range`), "index out of range"},
			{c(`(?s)^slice index out of range`), "slice index out of range"},
			{c(`(?s)^invalid slice index`), "invalid slice index"},
			{c(`(?s)^cannot index slice/array with nil`), "cannot index a list with nil"},
			{c(`(?s)^cannot index slice/array with type `), "cannot index a list with this type"},
			{c(`(?s)^can't index item of type `), "this value can't be indexed"},
			{c(`(?s)^can't slice item of type `), "this value can't be sliced"},
			{c(`(?s)^value has type .* cannot be used as map key`), "this key type can't index this map"},
			{c(`(?s)^incompatible types for comparison`), "incompatible types for comparison"},
			{c(`(?s)^invalid type for comparison`), "invalid type for comparison"},
			{c(`(?s)^missing argument for comparison`), "missing argument for comparison"},
			{c(`(?s)^len of `), "this value has no length"},
			{c(`(?s)^len of nil pointer`), "len of nil"},
		},
	}
})

// sanitize turns an execution error into a value-free *Error.
func (r *run) sanitize(err error, w *limitWriter) error {
	e := &Error{Template: r.t.name, Err: err}
	var se *safeError
	hasSafe := errors.As(err, &se)
	switch {
	case errors.Is(err, ErrLimit) && w.over:
		e.Msg = fmt.Sprintf("output exceeds the limit of %d bytes", r.lim.Output)
		e.Err = ErrOutputLimit
		return e
	case errors.Is(err, errPanic):
		e.Msg = "internal error while rendering"
		return e
	}
	var ee template.ExecError
	if !errors.As(err, &ee) {
		e.Msg = "render failed (details withheld: they may contain secret data)"
		return e
	}
	f := errorForms()
	m := f.execErr.FindStringSubmatch(ee.Err.Error())
	if m == nil {
		e.Msg = "render failed (details withheld: they may contain secret data)"
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Col, _ = strconv.Atoi(m[2])
	e.Col++ // text/template's columns are 0-based
	e.Context = m[3]
	reason := m[4]
	var site *stepError
	switch {
	case errors.As(err, &site):
		e.Line, e.Col, e.Context = site.site.Line, site.site.Col, site.site.What
		e.Err = site.err
		e.Msg = site.msg
	case hasSafe:
		name := ""
		if n, _, ok := strings.Cut(strings.TrimPrefix(reason, "error calling "), ":"); ok && strings.HasPrefix(reason, "error calling ") {
			name = n + ": "
		}
		if strings.HasPrefix(se.msg, name) {
			name = "" // the function's message already starts with its name
		}
		e.Msg = "error calling " + name + se.msg
		if se.err != nil {
			e.Err = se.err
		}
	case strings.HasPrefix(reason, "error calling "):
		name, rest, _ := strings.Cut(strings.TrimPrefix(reason, "error calling "), ": ")
		e.Msg = "error calling " + name
		for _, br := range f.builtin {
			if br.re.MatchString(rest) {
				e.Msg += ": " + br.repl
				break
			}
		}
	default:
		e.Msg = "render failed (reason withheld: it may contain secret data)"
		for _, re := range f.safe {
			if re.MatchString(reason) {
				e.Msg = reason
				break
			}
		}
		for _, vr := range f.value {
			if vr.re.MatchString(reason) {
				e.Msg = vr.repl
				break
			}
		}
	}
	// Defence in depth: should a value of the data still be in the text
	// (a key that equals a value, a Go release that words errors anew),
	// keep only the position.
	if r.leaks(e.Msg) || r.leaks(e.Context) {
		e.Context = ""
		e.Msg = "render failed (details withheld: they may contain secret data)"
	}
	return e
}
