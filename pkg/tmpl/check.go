package tmpl

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/template/parse"
)

// checker walks the parse trees once: it reports every problem, collects the
// dependencies and refs, and then instruments the trees with step counters.
type checker struct {
	t     *Template
	trees map[string]*parse.Tree
	errs  ErrorList
	deps  []Dependency
	refs  map[string]bool
	calls map[string][]call // template name → the templates it calls
	tree  string            // name of the tree being walked
	scope int               // depth of with/range: dot is no longer the top-level dot
}

type call struct {
	name string
	pos  parse.Pos
}

// tickSite is where a step counter was inserted.
type tickSite struct {
	Line, Col int
	What      string
}

// tickFunc is the step counter inserted at the top of every range body and
// defined template. The name cannot be written by a template: the checker
// refuses it as unknown before the counters are inserted.
const tickFunc = "_ramvaultStep"

func (c *checker) errorf(pos parse.Pos, context, format string, args ...any) {
	line, col := lineCol(c.t.src, pos)
	c.errs = append(c.errs, &Error{Template: c.t.name, Line: line, Col: col, Context: context, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) check() ErrorList {
	c.refs = map[string]bool{}
	c.calls = map[string][]call{}
	for _, name := range sortedNames(c.trees) {
		c.tree = name
		c.scope = 0
		if name != c.t.name {
			c.scope = 1 // dot inside a define is what the caller passed
		}
		c.walk(c.trees[name].Root)
	}
	c.checkCalls()
	sort.SliceStable(c.errs, func(i, j int) bool {
		a, b := c.errs[i], c.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	c.t.deps = mergeDeps(c.deps)
	for r := range c.refs {
		c.t.refs = append(c.t.refs, r)
	}
	sort.Strings(c.t.refs)
	return c.errs
}

func (c *checker) walk(n parse.Node) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, x := range n.Nodes {
			c.walk(x)
		}
	case *parse.ActionNode:
		c.pipe(n.Pipe)
	case *parse.IfNode:
		c.pipe(n.Pipe)
		c.walk(n.List)
		c.walk(n.ElseList)
	case *parse.WithNode:
		c.pipe(n.Pipe)
		c.scope++
		c.walk(n.List)
		c.scope--
		c.walk(n.ElseList)
	case *parse.RangeNode:
		c.rangeBound(n)
		c.pipe(n.Pipe)
		c.scope++
		c.walk(n.List)
		c.scope--
		c.walk(n.ElseList)
	case *parse.TemplateNode:
		c.calls[c.tree] = append(c.calls[c.tree], call{n.Name, n.Position()})
		if _, ok := c.trees[n.Name]; !ok {
			c.errorf(n.Position(), n.String(), "template %q is not defined%s: define it with {{define %q}}…{{end}}", n.Name, defined(c.trees, c.t.name), n.Name)
		}
		c.pipe(n.Pipe)
	}
}

func defined(trees map[string]*parse.Tree, root string) string {
	var names []string
	for _, n := range sortedNames(trees) {
		if n != root {
			names = append(names, strconv.Quote(n))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (defined: " + strings.Join(names, ", ") + ")"
}

func (c *checker) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	for i, cmd := range p.Cmds {
		c.command(cmd, i > 0)
	}
}

func (c *checker) command(cmd *parse.CommandNode, piped bool) {
	for i, a := range cmd.Args {
		switch a := a.(type) {
		case *parse.IdentifierNode:
			if i == 0 {
				c.function(a, cmd, piped)
			} else {
				// An identifier as an argument is a call without arguments.
				c.function(a, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: a.Pos, Args: []parse.Node{a}}, false)
			}
		case *parse.PipeNode:
			c.pipe(a)
		case *parse.ChainNode:
			if p, ok := a.Node.(*parse.PipeNode); ok {
				c.pipe(p)
			}
		case *parse.FieldNode, *parse.DotNode:
			if c.scope == 0 {
				c.t.usesDot = true
			}
		case *parse.VariableNode:
			if c.scope == 0 && len(a.Ident) > 0 && a.Ident[0] == "$" {
				c.t.usesDot = true
			}
		}
	}
}

func (c *checker) function(id *parse.IdentifierNode, cmd *parse.CommandNode, piped bool) {
	name := id.Ident
	if why, ok := refused(name); ok {
		c.errorf(id.Position(), name, "function %q is not available: %s", name, why)
		return
	}
	if !known(name) {
		c.errorf(id.Position(), name, "function %q is not defined%s", name, didYouMean(name))
		return
	}
	switch name {
	case "secret", "pkiCert":
		kind := KindSecret
		if name == "pkiCert" {
			kind = KindPKICert
		}
		args, ok := c.constArgs(id, cmd, piped)
		if !ok {
			return
		}
		d, err := newDependency(kind, args)
		if err != nil {
			c.errorf(id.Position(), cmd.String(), "%s", err)
			return
		}
		c.deps = append(c.deps, d)
	case "ref":
		args, ok := c.constArgs(id, cmd, piped)
		if !ok {
			return
		}
		if len(args) != 1 {
			c.errorf(id.Position(), cmd.String(), "ref takes one argument, the name of a secret the Pod defines (ramvault.io/secret-<name>), e.g. ref \"db\"")
			return
		}
		if err := validRefName(args[0]); err != nil {
			c.errorf(id.Position(), cmd.String(), "ref %q: %s", args[0], err)
			return
		}
		c.refs[args[0]] = true
	case "loop":
		c.loopBound(cmd)
	}
}

// constArgs returns the string constants of a secret/pkiCert/ref call. Every
// dependency must be known before the render, so the caller can fetch them
// all (once for the whole Pod) and never renders half a set.
func (c *checker) constArgs(id *parse.IdentifierNode, cmd *parse.CommandNode, piped bool) ([]string, bool) {
	if piped {
		c.errorf(id.Position(), cmd.String(), "%s cannot take its argument from a pipe: ramvault fetches every secret before rendering, so write the path as a string constant, e.g. %s \"secret/app\"", id.Ident, id.Ident)
		return nil, false
	}
	var args []string
	for _, a := range cmd.Args[1:] {
		s, ok := a.(*parse.StringNode)
		if !ok {
			c.errorf(a.Position(), cmd.String(), "argument %s of %s is not a string constant: ramvault fetches every secret before rendering, so its path and k=v arguments must be written out in quotes (no variables, fields or printf)", a, id.Ident)
			return nil, false
		}
		args = append(args, s.Text)
	}
	return args, true
}

func validRefName(n string) error {
	if n == "" || len(n) > 253 {
		return fmt.Errorf("name the secret as in ramvault.io/secret-<name>")
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("has %q: secret names are letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// rangeBound refuses `range N` with a constant N above the step limit: it
// could only fail at render time.
func (c *checker) rangeBound(n *parse.RangeNode) {
	if n.Pipe == nil || len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
		return
	}
	if num, ok := n.Pipe.Cmds[0].Args[0].(*parse.NumberNode); ok {
		switch {
		case !num.IsInt:
			c.errorf(num.Position(), n.Pipe.String(), "range over %s: only an integer can be ranged over", num.Text)
		case num.Int64 > c.t.opts.Limits.Steps:
			c.errorf(num.Position(), n.Pipe.String(), "range over %s exceeds the step limit (%d): range over the data instead", num.Text, c.t.opts.Limits.Steps)
		}
	}
}

func (c *checker) loopBound(cmd *parse.CommandNode) {
	var nums []int64
	for _, a := range cmd.Args[1:] {
		n, ok := a.(*parse.NumberNode)
		if !ok || !n.IsInt {
			return
		}
		nums = append(nums, n.Int64)
	}
	var from, to int64
	switch len(nums) {
	case 1:
		to = nums[0]
	case 2:
		from, to = nums[0], nums[1]
	default:
		return
	}
	if to-from > c.t.opts.Limits.Steps || (from < 0 && to > 0 && to-from < 0) {
		c.errorf(cmd.Position(), cmd.String(), "%s exceeds the step limit (%d): loop over fewer numbers", cmd, c.t.opts.Limits.Steps)
	}
}

// checkCalls refuses recursive templates: their depth would depend on the
// data, and text/template allows 100,000 levels, enough to exhaust memory.
func (c *checker) checkCalls() {
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		state[name] = active
		for _, cl := range c.calls[name] {
			switch state[cl.name] {
			case active:
				cycle := append(append([]string{}, path...), name, cl.name)
				i := indexOf(cycle, cl.name)
				c.errorf(cl.pos, "template "+strconv.Quote(cl.name), "recursive template (%s): recursion is refused because its depth would be unbounded; unroll it or range over the data", strings.Join(quoteAll(cycle[i:]), " → "))
			case unseen:
				if _, ok := c.trees[cl.name]; ok {
					visit(cl.name, append(path, name))
				}
			}
		}
		state[name] = done
	}
	for _, n := range sortedNames(c.trees) {
		if state[n] == unseen {
			visit(n, nil)
		}
	}
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return 0
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.Quote(v)
	}
	return out
}

// instrument inserts a step counter at the top of every range body and every
// defined template. text/template cannot be interrupted; a function that
// returns an error stops it, so each counter charges the body's node count
// against Limits.Steps and checks the deadline.
func (c *checker) instrument() {
	for _, name := range sortedNames(c.trees) {
		tr := c.trees[name]
		if name != c.t.name && tr.Root != nil {
			c.prepend(tr.Root, tr.Root.Position(), "template "+strconv.Quote(name))
		}
		c.instrumentList(tr.Root)
	}
}

func (c *checker) instrumentList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.IfNode:
			c.instrumentList(n.List)
			c.instrumentList(n.ElseList)
		case *parse.WithNode:
			c.instrumentList(n.List)
			c.instrumentList(n.ElseList)
		case *parse.RangeNode:
			c.instrumentList(n.List)
			c.instrumentList(n.ElseList)
			if n.List != nil {
				c.prepend(n.List, n.Position(), "range")
			}
		}
	}
}

func (c *checker) prepend(l *parse.ListNode, pos parse.Pos, what string) {
	line, col := lineCol(c.t.src, pos)
	id := len(c.t.ticks)
	c.t.ticks = append(c.t.ticks, tickSite{Line: line, Col: col, What: what})
	// +1: an empty body still costs its pass (a range over 10^9 with
	// nothing inside must stop too).
	l.Nodes = append([]parse.Node{tickNode(id, weight(l)+1)}, l.Nodes...)
}

// weight is the number of nodes one pass through l executes, not counting
// nested range bodies (they count their own passes).
func weight(l *parse.ListNode) int64 {
	if l == nil {
		return 0
	}
	var w int64
	for _, n := range l.Nodes {
		w++
		switch n := n.(type) {
		case *parse.IfNode:
			w += weight(n.List) + weight(n.ElseList)
		case *parse.WithNode:
			w += weight(n.List) + weight(n.ElseList)
		case *parse.ActionNode:
			w += int64(len(n.Pipe.Cmds))
		}
	}
	return w
}

// tickNode is `{{_ramvaultStep ID WEIGHT}}`, parsed rather than built so the
// node is complete; it prints nothing.
func tickNode(id int, w int64) parse.Node {
	src := fmt.Sprintf("{{%s %d %d}}", tickFunc, id, w)
	tr := parse.New("step")
	tr.Mode = parse.SkipFuncCheck
	if _, err := tr.Parse(src, "{{", "}}", map[string]*parse.Tree{}); err != nil {
		panic(err) // constant input
	}
	return tr.Root.Nodes[0]
}

func sortedNames(trees map[string]*parse.Tree) []string {
	names := make([]string, 0, len(trees))
	for n := range trees {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lineCol turns a byte offset into a 1-based line and column (in bytes).
func lineCol(src string, pos parse.Pos) (int, int) {
	p := int(pos)
	if p > len(src) {
		p = len(src)
	}
	if p < 0 {
		p = 0
	}
	before := src[:p]
	line := 1 + strings.Count(before, "\n")
	col := p - strings.LastIndex(before, "\n")
	return line, col
}
