package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image spec.
const (
	MediaIndex    = "application/vnd.oci.image.index.v1+json"
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	// RefName is the annotation of index.json naming each image.
	RefName = "org.opencontainers.image.ref.name"
)

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string { return p.OS + "/" + p.Architecture }

// Index is an OCI image index (index.json, or a multi-platform image).
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	Config Descriptor   `json:"config"`
	Layers []Descriptor `json:"layers"`
}

// Config is the part of an image configuration the checks read.
type Config struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// Archive is an OCI image layout read from a tarball (oci-archive).
type Archive struct {
	Top   Index             // index.json
	Blobs map[string][]byte // by digest
}

// ReadArchive reads an OCI archive whole (the images are a few tens of MB).
func ReadArchive(file string) (*Archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a := &Archive{Blobs: map[string][]byte{}}
	var top []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == "index.json":
			top = b
		case strings.HasPrefix(name, "blobs/"):
			alg, hex, _ := strings.Cut(strings.TrimPrefix(name, "blobs/"), "/")
			a.Blobs[alg+":"+hex] = b
		}
	}
	if top == nil {
		return nil, fmt.Errorf("%s: no index.json (not an OCI archive?)", file)
	}
	if err := json.Unmarshal(top, &a.Top); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", file, err)
	}
	return a, nil
}

// Blob returns the blob of a descriptor, its digest verified.
func (a *Archive) Blob(d Descriptor) ([]byte, error) {
	b, ok := a.Blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s missing", d.Digest)
	}
	if got := digestOf(b); got != d.Digest {
		return nil, fmt.Errorf("blob %s has digest %s", d.Digest, got)
	}
	return b, nil
}

func (a *Archive) decode(d Descriptor, v any) error {
	b, err := a.Blob(d)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Ref is one named image of the archive: its index (multi-platform) and the
// image of each platform.
type Ref struct {
	Name   string
	Index  Index
	Images []Image
}

// Image is one platform's image.
type Image struct {
	Platform Platform
	Manifest Manifest
	Config   Config
	Digest   string // the manifest's
	archive  *Archive
}

// Refs returns the archive's named images, in index.json order. An entry of
// index.json that is a single manifest comes back as a one-image Ref with an
// empty Index.
func (a *Archive) Refs() ([]Ref, error) {
	var out []Ref
	for _, d := range a.Top.Manifests {
		r := Ref{Name: d.Annotations[RefName]}
		descs := []Descriptor{d}
		if d.MediaType == MediaIndex {
			if err := a.decode(d, &r.Index); err != nil {
				return nil, fmt.Errorf("%s: %w", r.Name, err)
			}
			descs = r.Index.Manifests
		}
		for _, md := range descs {
			im := Image{Digest: md.Digest, archive: a}
			if err := a.decode(md, &im.Manifest); err != nil {
				return nil, fmt.Errorf("%s: manifest: %w", r.Name, err)
			}
			if err := a.decode(im.Manifest.Config, &im.Config); err != nil {
				return nil, fmt.Errorf("%s: config: %w", r.Name, err)
			}
			im.Platform = Platform{OS: im.Config.OS, Architecture: im.Config.Architecture}
			if md.Platform != nil && *md.Platform != im.Platform {
				return nil, fmt.Errorf("%s: index says %s, the image's config %s", r.Name, md.Platform, im.Platform)
			}
			r.Images = append(r.Images, im)
		}
		out = append(out, r)
	}
	return out, nil
}

// Entry is a file of an image's layers.
type Entry struct {
	Header *tar.Header
	Data   []byte
}

// Files returns the files of the image (its layers applied in order), by
// path without the leading slash.
func (im Image) Files() (map[string]Entry, error) {
	out := map[string]Entry{}
	for _, l := range im.Manifest.Layers {
		b, err := im.archive.Blob(l)
		if err != nil {
			return nil, err
		}
		var r io.Reader = bytes.NewReader(b)
		if strings.HasSuffix(l.MediaType, "gzip") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
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
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			out[strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")] = Entry{Header: h, Data: data}
		}
	}
	return out, nil
}

// LayerSizes is the compressed size of the image's layers and the size of
// the files they unpack to.
func (im Image) LayerSizes() (compressed, unpacked int64, err error) {
	files, err := im.Files()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range im.Manifest.Layers {
		compressed += l.Size
	}
	for _, e := range files {
		unpacked += e.Header.Size
	}
	return compressed, unpacked, nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// tarLayout writes the OCI layout in dir as an archive, with annotations
// added to every image index it names (buildah 1.28 cannot annotate an
// index) and the blobs index.json no longer reaches left out. Entries are
// sorted and dated at epoch, so the same layout gives the same tarball.
func tarLayout(dir, out string, annotations map[string]string, epoch time.Time) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	topb, err := read("index.json")
	if err != nil {
		return err
	}
	var top Index
	if err := json.Unmarshal(topb, &top); err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	blobs := map[string][]byte{}
	blob := func(digest string) ([]byte, error) {
		if b, ok := blobs[digest]; ok {
			return b, nil
		}
		return read(filepath.Join("blobs", strings.Replace(digest, ":", "/", 1)))
	}
	// Every blob reachable from index.json, with each index annotated.
	var walk func(d *Descriptor) error
	walk = func(d *Descriptor) error {
		b, err := blob(d.Digest)
		if err != nil {
			return err
		}
		switch d.MediaType {
		case MediaIndex:
			var ix map[string]any
			if err := json.Unmarshal(b, &ix); err != nil {
				return err
			}
			var sub Index
			if err := json.Unmarshal(b, &sub); err != nil {
				return err
			}
			for i := range sub.Manifests {
				if err := walk(&sub.Manifests[i]); err != nil {
					return err
				}
			}
			ann, _ := ix["annotations"].(map[string]any)
			if ann == nil {
				ann = map[string]any{}
			}
			for k, v := range annotations {
				ann[k] = v
			}
			ix["annotations"] = ann
			if b, err = json.Marshal(ix); err != nil {
				return err
			}
			d.Digest, d.Size = digestOf(b), int64(len(b))
		case MediaManifest:
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				return err
			}
			for _, l := range append([]Descriptor{m.Config}, m.Layers...) {
				lb, err := blob(l.Digest)
				if err != nil {
					return err
				}
				blobs[l.Digest] = lb
			}
		}
		blobs[d.Digest] = b
		return nil
	}
	for i := range top.Manifests {
		if err := walk(&top.Manifests[i]); err != nil {
			return fmt.Errorf("%s: %w", top.Manifests[i].Annotations[RefName], err)
		}
	}
	topb, err = json.Marshal(top)
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), ".layout-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := add("index.json", topb); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := add("blobs/"+strings.Replace(d, ":", "/", 1), blobs[d]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
