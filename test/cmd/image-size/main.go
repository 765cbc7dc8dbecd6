// Command image-size prints the size of each image `make image` exported to
// bin/images/ (or $IMAGES_DIR), for each platform: compressed (what a
// registry stores and a node pulls) and unpacked (the image's files),
// against the goals of the shipped images.
//
//	make image-size
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ramvault/ramvault/test/images"
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
	files, _ := filepath.Glob(filepath.Join(images.Dir(root), "*.tar"))
	if len(files) == 0 {
		return errors.New("no archives in " + images.Dir(root) + ": run `make image`")
	}
	fmt.Printf("| %-22s | %-11s | %10s | %10s | %12s |\n|%s|%s|%s|%s|%s|\n", "image", "platform", "compressed", "unpacked", "goal",
		strings.Repeat("-", 24), strings.Repeat("-", 13), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 14))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".tar")
		a, err := images.ReadArchive(f)
		if err != nil {
			return err
		}
		refs, err := a.Refs()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if len(refs) == 0 {
			return fmt.Errorf("%s: no image in index.json", f)
		}
		// Every tag of the archive names the same index: one row per platform.
		for _, im := range refs[0].Images {
			comp, unpacked, err := im.LayerSizes()
			if err != nil {
				return fmt.Errorf("%s %s: %w", f, im.Platform, err)
			}
			goal := "—"
			if g, ok := goals[name]; ok {
				verdict := "met"
				if float64(unpacked)/1e6 > g {
					verdict = "MISSED"
				}
				goal = fmt.Sprintf("≤ %.0f MB %s", g, verdict)
			}
			fmt.Printf("| %-22s | %-11s | %7.1f MB | %7.1f MB | %s |\n", name, im.Platform, float64(comp)/1e6, float64(unpacked)/1e6, goal)
		}
	}
	return nil
}
