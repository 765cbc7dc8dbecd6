package sidecar

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ramvault/ramvault/pkg/spec"
)

func TestSignalFlags(t *testing.T) {
	ann := filepath.Join(t.TempDir(), "annotations")
	if err := os.WriteFile(ann, []byte(`ramvault.io/secret-db="database/creds/app"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--" + spec.FlagAnnotations + "=" + ann}
	t.Run("the mount path is taken", func(t *testing.T) {
		c, err := parseFlags(append(base, "--signal-mount-path=/vault/secrets"), &bytes.Buffer{})
		if err != nil || c.SignalMountPath != "/vault/secrets" || c.SignalProcess != "" {
			t.Fatalf("%+v, %v", c.SignalMountPath, err)
		}
	})
	t.Run("a process name and a mount path are refused together", func(t *testing.T) {
		_, err := parseFlags(append(base, "--signal-process=nginx", "--signal-mount-path=/vault/secrets"), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Fatalf("err %v, want 'not both'", err)
		}
	})
}
