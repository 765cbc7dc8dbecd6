package tmpl

import (
	"reflect"
	"strings"
)

// Cost functions bound, before a call, the bytes it will produce. They are
// upper bounds computed in time linear in the input (and they stop walking
// once past any limit), so a call the budget cannot pay is refused before it
// allocates.

const costCap = 1 << 62

func add64(a, b int64) int64 {
	if a > costCap-b {
		return costCap
	}
	return a + b
}

func mul64(a, b int64) int64 {
	if a != 0 && b > costCap/a {
		return costCap
	}
	return a * b
}

// sumCost charges per*len(string arguments) + fixed.
func sumCost(per, fixed int64) func([]any) int64 {
	return func(args []any) int64 {
		n := fixed
		for _, a := range args {
			n = add64(n, mul64(per, valueSize(a, 0, 0)))
		}
		return n
	}
}

// jsonCost bounds an encoding of the arguments with indent bytes per level
// of nesting (each element of a nested value may be written on a line of its
// own, indented), times an optional escaping factor.
func jsonCost(indent int64, mult ...int64) func([]any) int64 {
	m := int64(6) // \u00XX escapes
	if len(mult) > 0 {
		m = mult[0]
	}
	return func(args []any) int64 {
		var n int64
		for _, a := range args {
			n = add64(n, mul64(m, valueSize(a, indent, 0)))
		}
		return add64(n, 16)
	}
}

// valueSize bounds the printed size of v: string bytes, 32 per scalar, and
// per element of a map or list its separators and indent*(depth+1).
func valueSize(v any, indent int64, depth int64) int64 {
	return sizeOf(reflect.ValueOf(v), indent, depth)
}

func sizeOf(v reflect.Value, indent, depth int64) int64 {
	if depth > 10000 {
		return costCap
	}
	if !v.IsValid() {
		return 8
	}
	line := 4 + indent*(depth+1)
	switch v.Kind() {
	case reflect.String:
		return int64(v.Len()) + 2
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return 8
		}
		return sizeOf(v.Elem(), indent, depth)
	case reflect.Map:
		n := line
		it := v.MapRange()
		for it.Next() {
			n = add64(n, line)
			n = add64(n, sizeOf(it.Key(), indent, depth+1))
			n = add64(n, sizeOf(it.Value(), indent, depth+1))
			if n >= costCap {
				return n
			}
		}
		return n
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return int64(v.Len())*4 + 2
		}
		n := line
		for i := 0; i < v.Len(); i++ {
			n = add64(n, line)
			n = add64(n, sizeOf(v.Index(i), indent, depth+1))
			if n >= costCap {
				return n
			}
		}
		return n
	case reflect.Struct:
		n := line
		for i := 0; i < v.NumField(); i++ {
			n = add64(n, line+int64(len(v.Type().Field(i).Name)))
			if v.Type().Field(i).IsExported() {
				n = add64(n, sizeOf(v.Field(i), indent, depth+1))
			}
		}
		return n
	}
	return 32
}

func str(a any) string {
	s, _ := a.(string)
	return s
}

// splitCost: a list header (16 bytes) per piece.
func splitCost(args []any) int64 {
	s := str(args[len(args)-1])
	var pieces int64 = 1
	if sep := str(args[0]); sep == "" {
		pieces = int64(len(s))
	} else {
		pieces = int64(strings.Count(s, sep)) + 1
	}
	return add64(int64(len(s)), mul64(pieces, 16))
}

func joinCost(args []any) int64 {
	sep := str(args[0])
	list, _ := args[1].([]string)
	n := mul64(int64(len(sep)), int64(len(list)))
	for _, e := range list {
		n = add64(n, int64(len(e)))
	}
	return n
}

// replaceCost is the exact size of strings.ReplaceAll(s, old, new).
func replaceCost(args []any) int64 {
	old, new, s := str(args[0]), str(args[1]), str(args[2])
	var count int64
	if old == "" {
		count = int64(len([]rune(s))) + 1
	} else {
		count = int64(strings.Count(s, old))
	}
	grow := int64(len(new) - len(old))
	if grow < 0 {
		grow = 0
	}
	return add64(int64(len(s)), mul64(count, grow))
}

func indentCost(args []any) int64 {
	n, _ := args[0].(int)
	s := str(args[1])
	if n < 0 {
		return 0
	}
	lines := int64(strings.Count(s, "\n")) + 1
	return add64(int64(len(s)), mul64(lines, int64(n)))
}

// printfCost: the format, the arguments, and every width and precision in
// the format (fmt pads into memory before anything is written). A '*' width
// takes its value from an argument: every integer argument is counted.
func printfCost(args []any) int64 {
	format := str(args[0])
	n := int64(len(format))
	for _, a := range args[1:] {
		n = add64(n, mul64(2, valueSize(a, 0, 0)))
	}
	star := false
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format); i++ {
			c := format[i]
			if c == '*' {
				star = true
				continue
			}
			if c >= '0' && c <= '9' {
				var w int64
				for ; i < len(format) && format[i] >= '0' && format[i] <= '9'; i++ {
					w = add64(mul64(w, 10), int64(format[i]-'0'))
				}
				n = add64(n, w)
				i--
				continue
			}
			if strings.IndexByte("+-# .[]", c) >= 0 {
				continue
			}
			break
		}
	}
	if star {
		for _, a := range args[1:] {
			rv := reflect.ValueOf(a)
			switch numKind(rv) {
			case 'i':
				x := rv.Int()
				if x < 0 {
					x = -x
				}
				n = add64(n, x)
			case 'u':
				n = add64(n, int64(min(rv.Uint(), costCap)))
			}
		}
	}
	return n
}
