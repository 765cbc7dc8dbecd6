package images

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// The SBOM beside each image (bin/images/<name>.sbom.json) is CycloneDX 1.5
// JSON: the image as the metadata component; each platform's Go binaries as
// applications carrying, nested, every module linked in (path, version, the
// go.sum hash) from the binary's own build information (what `go version -m`
// prints), the Go version and GOOS/GOARCH; the other files by SHA-256.

// BOM is the CycloneDX document.
type BOM struct {
	BOMFormat    string      `json:"bomFormat"`
	SpecVersion  string      `json:"specVersion"`
	SerialNumber string      `json:"serialNumber"`
	Version      int         `json:"version"`
	Metadata     BOMMetadata `json:"metadata"`
	Components   []Component `json:"components"`
}

// BOMMetadata names the image the BOM describes.
type BOMMetadata struct {
	Timestamp string    `json:"timestamp"`
	Component Component `json:"component"`
}

// Component is a CycloneDX component.
type Component struct {
	Type       string      `json:"type"`
	BOMRef     string      `json:"bom-ref,omitempty"`
	Name       string      `json:"name"`
	Version    string      `json:"version,omitempty"`
	PURL       string      `json:"purl,omitempty"`
	Hashes     []Hash      `json:"hashes,omitempty"`
	Properties []Property  `json:"properties,omitempty"`
	Components []Component `json:"components,omitempty"`
}

// Hash is a CycloneDX hash.
type Hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

// Property is a CycloneDX name/value property.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Prop returns the value of the named property ("" if absent).
func (c Component) Prop(name string) string {
	for _, p := range c.Properties {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// sbomFile is one file of one platform's image, as built on the host.
type sbomFile struct {
	platform Platform
	dst      string // path in the image
	host     string // the file on the host
	goBinary bool
}

func buildSBOM(image, version string, labels map[string]string, created time.Time, files []sbomFile) (*BOM, error) {
	bom := &BOM{BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: BOMMetadata{Timestamp: created.UTC().Format(time.RFC3339), Component: Component{
			Type: "container", BOMRef: image + ":" + version, Name: image, Version: version,
			Properties: []Property{{"org.opencontainers.image.source", labels["org.opencontainers.image.source"]},
				{"org.opencontainers.image.revision", labels["org.opencontainers.image.revision"]}},
		}}}
	for _, f := range files {
		sum, err := fileSHA256(f.host)
		if err != nil {
			return nil, err
		}
		plat := Property{"platform", f.platform.String()}
		if !f.goBinary {
			bom.Components = append(bom.Components, Component{Type: "file", BOMRef: f.platform.String() + ":" + f.dst,
				Name: f.dst, Hashes: []Hash{{"SHA-256", sum}}, Properties: []Property{plat}})
			continue
		}
		bi, err := buildinfo.ReadFile(f.host)
		if err != nil {
			return nil, fmt.Errorf("%s: build information: %w", f.host, err)
		}
		app := Component{Type: "application", BOMRef: f.platform.String() + ":" + f.dst, Name: bi.Path,
			Version: version, Hashes: []Hash{{"SHA-256", sum}},
			Properties: []Property{plat, {"path", f.dst}, {"go:version", bi.GoVersion}, {"go:module", bi.Main.Path}}}
		for _, s := range bi.Settings {
			app.Properties = append(app.Properties, Property{"go:build:" + s.Key, s.Value})
		}
		for _, m := range bi.Deps {
			c := Component{Type: "library", Name: m.Path, Version: m.Version,
				PURL: "pkg:golang/" + m.Path + "@" + m.Version, Properties: []Property{{"go:sum", m.Sum}}}
			if r := m.Replace; r != nil {
				c.Name, c.Version, c.PURL = r.Path, r.Version, "pkg:golang/"+r.Path+"@"+r.Version
				c.Properties = []Property{{"go:sum", r.Sum}, {"go:replaces", m.Path + "@" + m.Version}}
			}
			c.BOMRef = f.platform.String() + ":" + f.dst + ":" + c.Name + "@" + c.Version
			app.Components = append(app.Components, c)
		}
		bom.Components = append(bom.Components, app)
	}
	// A serial number that is the same for the same content (RFC 4122
	// version 5-like layout over its SHA-256).
	b, err := json.Marshal(bom)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(b)
	h[6], h[8] = h[6]&0x0f|0x50, h[8]&0x3f|0x80
	x := hex.EncodeToString(h[:16])
	bom.SerialNumber = fmt.Sprintf("urn:uuid:%s-%s-%s-%s-%s", x[0:8], x[8:12], x[12:16], x[16:20], x[20:32])
	return bom, nil
}

// ReadSBOM reads an SBOM file `make image` wrote.
func ReadSBOM(file string) (*BOM, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var bom BOM
	if err := json.Unmarshal(b, &bom); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &bom, nil
}

func fileSHA256(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}
