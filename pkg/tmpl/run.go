package tmpl

import (
	"io"
	"reflect"
	"strings"
	"text/template"
	"time"
)

// run is the state of one Execute: budgets, the deadline and the values the
// render has seen (for the last check that no error quotes one).
type run struct {
	t        *Template
	in       Input
	lim      Limits
	steps    int64
	work     int64
	deadline time.Time
	seen     []any
}

func newRun(t *Template, in Input) *run {
	r := &run{t: t, in: in, lim: t.opts.Limits}
	r.deadline = time.Now().Add(r.lim.Time)
	if in.Dot != nil {
		r.seen = append(r.seen, in.Dot)
	}
	return r
}

// stepError is the error of the inserted step counter: it names the range or
// template whose pass went over the budget.
type stepError struct {
	site tickSite
	msg  string
	err  error
}

func (e *stepError) Error() string { return e.msg }
func (e *stepError) Unwrap() error { return e.err }

// step charges n steps and checks the deadline.
func (r *run) step(n int64) error {
	r.steps += n
	if r.steps > r.lim.Steps {
		return &safeError{msg: "the render exceeds the step limit (" + itoa(r.lim.Steps) + " steps): a range over too much data, or nested ranges", err: ErrStepLimit}
	}
	if time.Now().After(r.deadline) {
		return &safeError{msg: "the render exceeds the time limit (" + r.lim.Time.String() + ")", err: ErrTimeLimit}
	}
	return nil
}

// charge reserves n bytes of function output before it is allocated.
func (r *run) charge(n int64) error {
	if n > r.lim.Output {
		return &safeError{msg: "the result would exceed the output limit (" + itoa(r.lim.Output) + " bytes)", err: ErrOutputLimit}
	}
	r.work += n
	if r.work > r.lim.Work {
		return &safeError{msg: "the render's functions would produce more than the work limit (" + itoa(r.lim.Work) + " bytes)", err: ErrWorkLimit}
	}
	return nil
}

func (r *run) tick(id, w int) (string, error) {
	if err := r.step(int64(w)); err != nil {
		se := err.(*safeError)
		site := tickSite{What: "range"}
		if id >= 0 && id < len(r.t.ticks) {
			site = r.t.ticks[id]
		}
		return "", &stepError{site: site, msg: se.msg, err: se.err}
	}
	return "", nil
}

// funcs is the function map of one render: every function of the table,
// wrapped so each call is a step and its result is paid for before it is
// built.
func (r *run) funcs() template.FuncMap {
	m := template.FuncMap{tickFunc: r.tick}
	for _, f := range functions() {
		m[f.Name] = r.wrap(f)
	}
	return m
}

// placeholderFuncs gives the parsed template the names it will find at
// Execute (each render installs its own closures over its budgets).
func placeholderFuncs() template.FuncMap {
	r := &run{t: &Template{}}
	return r.funcs()
}

func (r *run) wrap(f fn) any {
	impl := reflect.ValueOf(f.make(r))
	return reflect.MakeFunc(impl.Type(), func(args []reflect.Value) []reflect.Value {
		if err := r.step(1); err != nil {
			panic(err)
		}
		if f.cost != nil {
			vals := make([]any, len(args))
			for i, a := range args {
				if a.IsValid() && a.CanInterface() {
					vals[i] = a.Interface()
				}
			}
			if a := impl.Type(); a.IsVariadic() && len(vals) > 0 {
				// the last reflect arg is the variadic slice: spread it
				last := args[len(args)-1]
				vals = vals[:len(vals)-1]
				for i := 0; i < last.Len(); i++ {
					vals = append(vals, last.Index(i).Interface())
				}
			}
			if err := r.charge(f.cost(vals)); err != nil {
				panic(err)
			}
		}
		var out []reflect.Value
		if impl.Type().IsVariadic() {
			out = impl.CallSlice(args)
		} else {
			out = impl.Call(args)
		}
		if len(out) > 0 && out[0].Kind() == reflect.String && int64(out[0].Len()) > r.lim.Output {
			panic(&safeError{msg: "the result exceeds the output limit (" + itoa(r.lim.Output) + " bytes)", err: ErrOutputLimit})
		}
		return out
	}).Interface()
}

// leaks reports whether s contains a string value (not a key) of the data the render saw
// (4 bytes or longer: shorter ones match template text too often to mean
// anything, and are withheld by the reason filters anyway).
func (r *run) leaks(s string) bool {
	if s == "" {
		return false
	}
	found := false
	var walk func(v reflect.Value, depth int)
	walk = func(v reflect.Value, depth int) {
		if found || depth > 64 || !v.IsValid() {
			return
		}
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), depth+1)
			}
		case reflect.String:
			if v.Len() >= 4 && strings.Contains(s, v.String()) {
				found = true
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() && !found { // keys are template source, not secrets
				walk(it.Value(), depth+1)
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len() && !found; i++ {
				walk(v.Index(i), depth+1)
			}
		case reflect.Struct:
			for i := 0; i < v.NumField() && !found; i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), depth+1)
				}
			}
		}
	}
	for _, v := range r.seen {
		walk(reflect.ValueOf(v), 0)
	}
	return found
}

// limitWriter fails the write that would pass the output limit; text/template
// stops at the first write error.
type limitWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		return 0, ErrOutputLimit
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
