// Command image-size prints the size of each image `make image` exported to
// bin/images/: compressed (what a registry stores and a node pulls) and
// unpacked (the image's files), against the goals of the shipped images.
//
//	make image-size
package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ramvault/ramvault/test/stack"
)

// goals are the size limits of the shipped images (unpacked), in MB.
var goals = map[string]float64{"ramvault-agent": 12, "ramvault": 40}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image-size:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := stack.RepoRoot()
	if err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(root, "bin", "images", "*.tar"))
	if len(files) == 0 {
		return errors.New("no archives in bin/images: run `make image`")
	}
	fmt.Printf("| %-22s | %10s | %10s | %8s |\n|%s|%s|%s|%s|\n", "image", "compressed", "unpacked", "goal",
		strings.Repeat("-", 24), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 10))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".tar")
		comp, unpacked, err := sizes(f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		goal := "—"
		if g, ok := goals[name]; ok {
			verdict := "met"
			if unpacked/1e6 > g {
				verdict = "MISSED"
			}
			goal = fmt.Sprintf("≤ %.0f MB %s", g, verdict)
		}
		fmt.Printf("| %-22s | %7.1f MB | %7.1f MB | %s |\n", name, comp/1e6, unpacked/1e6, goal)
	}
	return nil
}

// sizes reads an OCI archive: the layers' blob sizes (compressed) and the
// sizes of the files they unpack to.
func sizes(file string) (compressed, unpacked float64, err error) {
	blobs, err := readBlobs(file)
	if err != nil {
		return 0, 0, err
	}
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &idx); err != nil || len(idx.Manifests) == 0 {
		return 0, 0, fmt.Errorf("index.json: %v", err)
	}
	var m struct {
		Layers []struct {
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(blobs[blobPath(idx.Manifests[0].Digest)], &m); err != nil {
		return 0, 0, fmt.Errorf("manifest: %w", err)
	}
	for _, l := range m.Layers {
		b := blobs[blobPath(l.Digest)]
		compressed += float64(len(b))
		var r io.Reader = strings.NewReader(string(b))
		if strings.Contains(l.MediaType, "gzip") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return 0, 0, err
			}
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 0, 0, err
			}
			unpacked += float64(h.Size)
		}
	}
	return compressed, unpacked, nil
}

func blobPath(digest string) string { return "blobs/" + strings.Replace(digest, ":", "/", 1) }

func readBlobs(file string) (map[string][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(h.Name, "./")] = b
	}
}
