// Package images builds the Dockerfile's final images without a Docker
// engine and checks what `make image` exported: the binaries are
// cross-compiled on the host with the flags of the Dockerfile's `go build`
// line, and each final stage is assembled with buildah by applying exactly
// that stage's instructions, for linux/amd64 and linux/arm64, into one OCI
// index per image with an SBOM beside it.
package images

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Dockerfile is what the builder needs of the Dockerfile: the build stage's
// `go build` line and the final stages.
type Dockerfile struct {
	// GoBuild is the build stage's `go build`: its -ldflags (with
	// ${VERSION} unexpanded) and the packages, each built to /out/<base>.
	LDFlags  string
	Trimpath bool
	Packages []string
	// Stages are the stages FROM scratch or FROM another final stage, by name.
	Stages map[string]*Stage
	args   map[string]string // global ARG defaults
}

// Stage is a final image: its files, user, entrypoint and labels, with the
// stages it derives from already applied.
type Stage struct {
	Name       string
	Files      []File
	User       string
	Entrypoint []string
	Labels     map[string]string // values as written (${ARG} unexpanded)
	Args       map[string]string // ARGs declared in the stage, with defaults
}

// File is one COPY --from=build: Src in the build stage (/out/... for the
// binaries), Dst in the image, Mode from --chmod (0 when not given: the
// source's mode).
type File struct {
	Src, Dst string
	Mode     os.FileMode
}

// ParseDockerfile reads the Dockerfile. It accepts in the final stages only
// the instructions the builder applies, so that a new one cannot be silently
// left out of the images `make image` builds.
func ParseDockerfile(r io.Reader) (*Dockerfile, error) {
	instrs, err := instructions(r)
	if err != nil {
		return nil, err
	}
	d := &Dockerfile{Stages: map[string]*Stage{}, args: map[string]string{}}
	var cur *Stage   // current final stage, nil in the build stage
	inBuild := false // inside the build stage
	for _, in := range instrs {
		where := fmt.Sprintf("Dockerfile:%d", in.line)
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) != 3 || !strings.EqualFold(f[1], "AS") {
				return nil, fmt.Errorf("%s: FROM %q: want FROM IMAGE AS NAME", where, in.rest)
			}
			from, name := f[0], f[2]
			inBuild, cur = false, nil
			switch {
			case name == "build":
				inBuild = true
			case from == "scratch":
				cur = &Stage{Name: name, Labels: map[string]string{}, Args: map[string]string{}}
			case d.Stages[from] != nil:
				p := d.Stages[from]
				cur = &Stage{Name: name, Files: append([]File(nil), p.Files...), User: p.User,
					Entrypoint: p.Entrypoint, Labels: map[string]string{}, Args: map[string]string{}}
				// The parent's labels were expanded with its ARGs.
				for k, v := range p.Labels {
					cur.Labels[k] = v
				}
				for k, v := range p.Args {
					cur.Args[k] = v
				}
			default:
				return nil, fmt.Errorf("%s: stage %s is FROM %s: the image builder knows only scratch, the stage build and earlier final stages", where, name, from)
			}
			if cur != nil {
				d.Stages[name] = cur
			}
		case inBuild:
			if in.cmd == "RUN" && strings.Contains(in.rest, "go build") {
				if err := d.parseGoBuild(in.rest); err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
			}
		case cur == nil:
			if in.cmd != "ARG" {
				return nil, fmt.Errorf("%s: %s before the first FROM", where, in.cmd)
			}
			k, v, _ := strings.Cut(in.rest, "=")
			d.args[k] = v
		default:
			if err := cur.apply(in); err != nil {
				return nil, fmt.Errorf("%s: stage %s: %w", where, cur.Name, err)
			}
		}
	}
	if len(d.Packages) == 0 || d.LDFlags == "" {
		return nil, fmt.Errorf("Dockerfile: no `go build -ldflags \"...\" -o /out/ PACKAGES` in the stage build")
	}
	return d, nil
}

var ldflagsRE = regexp.MustCompile(`-ldflags\s+"([^"]*)"`)

func (d *Dockerfile) parseGoBuild(run string) error {
	m := ldflagsRE.FindStringSubmatch(run)
	if m == nil {
		return fmt.Errorf("go build without -ldflags \"...\"")
	}
	d.LDFlags = m[1]
	rest := strings.Fields(run[strings.Index(run, "go build"):])
	for i, f := range rest {
		switch {
		case f == "-trimpath":
			d.Trimpath = true
		case f == "-o" && (i+1 >= len(rest) || rest[i+1] != "/out/"):
			return fmt.Errorf("go build -o: want -o /out/")
		case strings.HasPrefix(f, "./"):
			d.Packages = append(d.Packages, f)
		}
	}
	return nil
}

func (s *Stage) apply(in instruction) error {
	switch in.cmd {
	case "ARG":
		k, v, _ := strings.Cut(in.rest, "=")
		s.Args[k] = v
	case "LABEL":
		kv, err := labelPairs(in.rest)
		if err != nil {
			return err
		}
		for k, v := range kv {
			s.Labels[k] = v
		}
	case "USER":
		s.User = in.rest
	case "ENTRYPOINT":
		var e []string
		if err := json.Unmarshal([]byte(in.rest), &e); err != nil || len(e) == 0 {
			return fmt.Errorf("ENTRYPOINT %s: want the JSON (exec) form", in.rest)
		}
		s.Entrypoint = e
	case "COPY":
		f := strings.Fields(in.rest)
		var file File
		from := ""
		for len(f) > 0 && strings.HasPrefix(f[0], "--") {
			k, v, _ := strings.Cut(strings.TrimPrefix(f[0], "--"), "=")
			switch k {
			case "from":
				from = v
			case "chmod":
				m, err := strconv.ParseUint(v, 8, 32)
				if err != nil {
					return fmt.Errorf("COPY --chmod=%s: want an octal mode", v)
				}
				file.Mode = os.FileMode(m)
			default:
				return fmt.Errorf("COPY --%s: the image builder applies only --from=build and --chmod", k)
			}
			f = f[1:]
		}
		if from != "build" || len(f) != 2 {
			return fmt.Errorf("COPY %s: want COPY --from=build [--chmod=MODE] SRC DST", in.rest)
		}
		file.Src, file.Dst = f[0], f[1]
		s.Files = append(s.Files, file)
	default:
		return fmt.Errorf("%s: the image builder (test/images) does not apply it: teach it, or the images `make image` builds would differ from docker build's", in.cmd)
	}
	return nil
}

// Expanded returns the labels with ${NAME} replaced by args (the build
// arguments given), else the ARG's default.
func (s *Stage) Expanded(args map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range s.Labels {
		out[k] = os.Expand(v, func(name string) string {
			if a, ok := args[name]; ok {
				return a
			}
			return s.Args[name]
		})
	}
	return out
}

// Targets are the final stages' names, sorted.
func (d *Dockerfile) Targets() []string {
	var out []string
	for n := range d.Stages {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func labelPairs(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("LABEL %q: want KEY=VALUE pairs (no spaces, no quotes)", f)
		}
		out[k] = v
	}
	return out, nil
}

type instruction struct {
	line      int
	cmd, rest string
}

// instructions splits the Dockerfile into instructions: comments dropped,
// backslash continuations joined.
func instructions(r io.Reader) ([]instruction, error) {
	var out []instruction
	sc := bufio.NewScanner(r)
	var buf strings.Builder
	n, start := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && buf.Len() == 0) {
			continue
		}
		if buf.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			buf.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		buf.WriteString(line)
		cmd, rest, _ := strings.Cut(strings.TrimSpace(buf.String()), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), rest: strings.TrimSpace(rest)})
		buf.Reset()
	}
	return out, sc.Err()
}
