package stack

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
)

func TestEnvFileRoundTripsEveryVariable(t *testing.T) {
	in := Env{Kubeconfig: "/k", VaultAddr: "http://v", VaultToken: "t'ok", PGHost: "h", PGPort: "1",
		PGUser: "u", PGPassword: "p w", PodVaultAddr: "http://pv", PodPGHost: "ph", CACert: "/ca", StateDir: "/s"}
	path := filepath.Join(t.TempDir(), "env")
	if err := in.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	out, err := ReadEnv(path)
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("read back %+v, want %+v", out, in)
	}
}

func TestMountPathsWithEscapesAreDecoded(t *testing.T) {
	if got := unescapeMount(`/a\040b\011c`); got != "/a b\tc" {
		t.Fatalf("got %q", got)
	}
}

func TestImageArchiveIsAnOCILayoutNamingTheImage(t *testing.T) {
	im := imageSpec{name: "localhost/x:1", files: []layerFile{{path: "bin", mode: 0o755, isDir: true}, {path: "bin/x", mode: 0o755, data: []byte("x")}}, entry: []string{"/bin/x"}}
	arc, err := im.ociArchive()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(arc))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "localhost/x:1" {
		t.Fatalf("index %s", files["index.json"])
	}
	if _, ok := files["blobs/sha256/"+index.Manifests[0].Digest[len("sha256:"):]]; !ok || files["oci-layout"] == nil {
		t.Fatalf("archive lacks the manifest blob or oci-layout: %v", len(files))
	}
}
