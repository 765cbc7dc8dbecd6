package spec

import (
	"strings"
	"testing"
)

func TestFrozenKeepsOnlyRamvaultAnnotationsAndRoundTrips(t *testing.T) {
	in := map[string]string{
		Prefix + "inject":      "true",
		Prefix + "secret-db":   "database/creds/app",
		Prefix + "template-db": `{{ .Data.username }}="x"` + "\n",
		Prefix + "status":      "injected v1",
		"other.io/key":         "left out",
	}
	s, err := EncodeFrozen(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeFrozen(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[Prefix+"template-db"] != in[Prefix+"template-db"] || out[Prefix+"secret-db"] != in[Prefix+"secret-db"] {
		t.Errorf("round trip = %v", out)
	}
	if _, ok := out["other.io/key"]; ok {
		t.Error("a foreign annotation was frozen")
	}
	if _, ok := out[Prefix+"status"]; ok {
		t.Error("the status annotation was frozen (the injector writes it after)")
	}
}

func TestFrozenRefusesWhatCouldNotBeAnArgument(t *testing.T) {
	_, err := EncodeFrozen(map[string]string{Prefix + "template-a": strings.Repeat("x", MaxFrozenBytes)})
	if err == nil || !strings.Contains(err.Error(), "shorten the templates") {
		t.Errorf("EncodeFrozen of %d bytes: %v", MaxFrozenBytes, err)
	}
	if _, err := DecodeFrozen(`{"evil.io/x":"1"}`); err == nil {
		t.Error("DecodeFrozen accepted a foreign key")
	}
	if _, err := DecodeFrozen(`not json`); err == nil {
		t.Error("DecodeFrozen accepted garbage")
	}
}
