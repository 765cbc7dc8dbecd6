package patch

import (
	"encoding/json"
	"testing"
)

// The writer's own string and pointer escaping must write what
// encoding/json and RFC 6901 do.
func TestAppendStringAndPointerToken(t *testing.T) {
	for _, s := range []string{"", "/spec/containers/0", "/metadata/annotations/ramvault.io~1status", `a"b`, `a\b`, "<&>",
		"tab\there", "é", "\u2028", "\x7f", "~", "a/b~c"} {
		want, _ := json.Marshal(s)
		if got := appendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendString(%q) = %s, want x%s", s, got, want)
		}
	}
	for in, want := range map[string]string{"ramvault.io/status": "ramvault.io~1status", "a~b": "a~0b", "~/": "~0~1", "plain": "plain"} {
		if got := pointerToken(in); got != want {
			t.Errorf("pointerToken(%q) = %q, want %q", in, got, want)
		}
	}
}
