package sidecar

import (
	"strings"
	"testing"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestRenderFormats(t *testing.T) {
	data := map[string]any{"username": "u", "password": `p"w=1`, "port": float64(5432)}
	cases := []struct {
		name string
		s    spec.Secret
		want string
	}{
		{"json is indented and sorted", spec.Secret{Format: spec.FormatJSON}, "{\n  \"password\": \"p\\\"w=1\",\n  \"port\": 5432,\n  \"username\": \"u\"\n}\n"},
		{"yaml quotes every scalar", spec.Secret{Format: spec.FormatYAML}, "\"password\": \"p\\\"w=1\"\n\"port\": 5432\n\"username\": \"u\"\n"},
		{"dotenv upper-cases keys and quotes values", spec.Secret{Format: spec.FormatDotenv}, "PASSWORD=\"p\\\"w=1\"\nPORT=\"5432\"\nUSERNAME=\"u\"\n"},
		{"properties escape separators", spec.Secret{Format: spec.FormatProperties}, "password=p\"w\\=1\nport=5432\nusername=u\n"},
		{"raw writes one value as is", spec.Secret{Format: spec.FormatRaw, Key: "password"}, `p"w=1`},
		{"a template sees the data and lease", spec.Secret{Format: spec.FormatTemplate, Template: `{{ .Data.username }}:{{ .LeaseDuration }}:{{ base64 "x" }}`}, "u:60:eA=="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Name = "s"
			r, err := newRenderer(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.render(&fetched{Data: data, LeaseDuration: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRenderErrorsNameTheProblemNotTheValues(t *testing.T) {
	data := map[string]any{"password": "hunter2"}
	r, _ := newRenderer(spec.Secret{Name: "db", Format: spec.FormatRaw, Key: "pass"})
	_, err := r.render(&fetched{Data: data})
	if err == nil || !strings.Contains(err.Error(), `no key "pass"`) || !strings.Contains(err.Error(), "ramvault.io/key-db") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	r, _ = newRenderer(spec.Secret{Name: "db", Format: spec.FormatTemplate, Template: `{{ .Data.missing }}`})
	if _, err := r.render(&fetched{Data: data}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("missing key in template: err = %v", err)
	}
}

func TestPlanRenewsAtTwoThirdsAndReissuesNearTheMaxTTL(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := &Agent{cfg: Config{Now: func() time.Time { return now }}}
	s := spec.Secret{Name: "db", Refresh: 5 * time.Minute}

	renew, at := a.plan(s, secretState{LeaseID: "l", LeaseDuration: 30 * time.Second, Renewable: true, Issued: now, Expires: now.Add(30 * time.Second)})
	if !renew || at.Before(now.Add(18*time.Second)) || at.After(now.Add(20*time.Second)) {
		t.Errorf("fresh renewable lease: renew=%v at +%s; want renew at about 2/3 (18–20s)", renew, at.Sub(now))
	}
	renew, _ = a.plan(s, secretState{LeaseID: "l", LeaseDuration: 30 * time.Second, Renewable: true, Issued: now, Expires: now.Add(10 * time.Second)})
	if renew {
		t.Error("a renewal granted less than the lease asked (max TTL near) must lead to a re-issue")
	}
	renew, at = a.plan(s, secretState{Issued: now.Add(-time.Minute)})
	if renew || !at.Equal(now.Add(4*time.Minute)) {
		t.Errorf("KV secret: renew=%v at +%s; want a re-read at its refresh interval", renew, at.Sub(now))
	}
}

func TestRestartProbeFailsOncePerContainerPerRotation(t *testing.T) {
	r := newReloader(nil, "", newMetrics(time.Now))
	if r.shouldRestart("app") {
		t.Fatal("failed before any rotation")
	}
	r.restartGen++
	if !r.shouldRestart("app") || r.shouldRestart("app") {
		t.Fatal("want exactly one failure after a rotation")
	}
	if r.shouldRestart("other") {
		t.Fatal("a container first seen after the rotation must not restart")
	}
}
