package spec

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseAnnotationsFile reads the kubelet's downward-API rendering of
// metadata.annotations: one `key="value"` line per annotation, the value
// quoted as a Go string. People running the agent by hand write the same.
// Blank lines and lines starting with # are skipped.
func ParseAnnotationsFile(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key=\"value\"", n)
		}
		val, err := strconv.Unquote(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("line %d (%s): the value must be a double-quoted string", n, strings.TrimSpace(k))
		}
		out[strings.TrimSpace(k)] = val
	}
	return out, sc.Err()
}
