package images

import (
	"strings"
	"testing"
)

const goBuild = `FROM --platform=$BUILDPLATFORM golang AS build
RUN go build -trimpath -ldflags "-s -w -X v=${VERSION}" \
      -o /out/ ./cmd/a ./cmd/b
`

func TestParseDockerfileStages(t *testing.T) {
	df, err := ParseDockerfile(strings.NewReader(goBuild + `
FROM scratch AS base
ARG VERSION=dev
LABEL a=1 v=${VERSION}
COPY --from=build /etc/x /etc/x
USER 1:1
FROM base AS one
# a comment
COPY --from=build --chmod=0111 /out/a /a
ENTRYPOINT ["/a"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if df.LDFlags != "-s -w -X v=${VERSION}" || !df.Trimpath || strings.Join(df.Packages, " ") != "./cmd/a ./cmd/b" {
		t.Errorf("go build: %q %v %q", df.LDFlags, df.Trimpath, df.Packages)
	}
	one := df.Stages["one"]
	if one == nil || one.User != "1:1" || strings.Join(one.Entrypoint, " ") != "/a" || len(one.Files) != 2 ||
		one.Files[1] != (File{Src: "/out/a", Dst: "/a", Mode: 0o111}) {
		t.Fatalf("stage one: %+v", one)
	}
	if l := one.Expanded(nil); l["v"] != "dev" || l["a"] != "1" {
		t.Errorf("labels with the ARG's default: %v", l)
	}
	if l := one.Expanded(map[string]string{"VERSION": "1.2.3"}); l["v"] != "1.2.3" {
		t.Errorf("labels with VERSION given: %v", l)
	}
	if df.Stages["base"].Entrypoint != nil {
		t.Errorf("base got the child's entrypoint")
	}
}

// An instruction the builder does not apply fails the build, naming it.
func TestParseDockerfileRejectsWhatItCannotApply(t *testing.T) {
	for stage, want := range map[string]string{
		"FROM scratch AS x\nRUN true":                          "RUN: the image builder",
		"FROM scratch AS x\nCOPY --chown=1 --from=build /a /a": "COPY --chown",
		"FROM scratch AS x\nCOPY cmd /cmd":                     "want COPY --from=build",
		"FROM scratch AS x\nENTRYPOINT /a":                     "JSON (exec) form",
		"FROM debian AS x":                                     "knows only scratch",
		"FROM scratch AS x\nLABEL a=\"b c\"":                   "KEY=VALUE",
	} {
		_, err := ParseDockerfile(strings.NewReader(goBuild + stage))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", stage, err, want)
		}
	}
	if _, err := ParseDockerfile(strings.NewReader("FROM golang AS build\nRUN true\n")); err == nil {
		t.Errorf("a build stage without go build parsed")
	}
}
