package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"
)

type memFiles map[string][]byte

func (m memFiles) Read(name string) ([]byte, error) {
	b, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", name, os.ErrNotExist)
	}
	return b, nil
}
func (m memFiles) Write(name string, data []byte, _ os.FileMode) (bool, error) {
	m[name] = data
	return true, nil
}
func (m memFiles) Remove(name string) error { delete(m, name); return nil }

type fullFiles struct{ memFiles }

func (fullFiles) Write(string, []byte, os.FileMode) (bool, error) {
	return false, errors.New("no space left on the secrets volume")
}

// The file keeps the shape the init container and earlier sidecars wrote.
func TestTheSavedFileKeepsItsShape(t *testing.T) {
	f := memFiles{}
	s := New(f)
	exp := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	if err := s.SetToken(Token{Token: "s.tok", Expires: exp, Renewable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateSecret("db", func(_ Secret, ok bool) Secret {
		if ok {
			t.Error("a record before the first")
		}
		return Secret{Path: "database/creds/app", LeaseID: "L", LeaseDuration: time.Minute, Renewable: true, Issued: exp, Expires: exp.Add(time.Minute)}
	}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(f[Name], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"token": "s.tok", "token_expires": "2026-01-01T01:00:00Z", "token_renewable": true,
		"secrets": map[string]any{"db": map[string]any{
			"path": "database/creds/app", "lease_id": "L", "lease_duration": float64(time.Minute), "renewable": true,
			"issued": "2026-01-01T01:00:00Z", "expires": "2026-01-01T01:01:00Z", "written": "0001-01-01T00:00:00Z",
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("saved %s", f[Name])
	}

	again := New(f)
	if ok, err := again.Load(); !ok || err != nil {
		t.Fatalf("load: %v %v", ok, err)
	}
	if again.Token() != s.Token() || !reflect.DeepEqual(again.Secrets(), s.Secrets()) {
		t.Error("what was loaded differs from what was saved")
	}
	if err := again.Clear(); err != nil || len(f) != 0 {
		t.Errorf("clear: %v, left %v", err, f)
	}
	if ok, err := again.Load(); ok || err != nil {
		t.Errorf("load of nothing: %v %v", ok, err)
	}
}

func TestErrorsAreReturned(t *testing.T) {
	s := New(memFiles{Name: []byte("{not json")})
	if _, err := s.Load(); err == nil {
		t.Error("a corrupt file loaded without an error")
	}
	if s.Token().Token != "" || len(s.Secrets()) != 0 {
		t.Error("a failed load left something behind")
	}
	full := New(fullFiles{memFiles{}})
	if err := full.SetToken(Token{Token: "x"}); err == nil {
		t.Error("a failed save was not reported")
	}
}

// Secrets is a copy: changing it does not change the store.
func TestSecretsIsACopy(t *testing.T) {
	s := New(memFiles{})
	if _, err := s.UpdateSecret("a", func(Secret, bool) Secret { return Secret{Path: "p"} }); err != nil {
		t.Fatal(err)
	}
	m := s.Secrets()
	m["a"] = Secret{Path: "changed"}
	if got, _ := s.Secret("a"); got.Path != "p" {
		t.Error("the store changed through a copy")
	}
}
