// Command image-build builds the Dockerfile's final images for linux/amd64
// and linux/arm64 without a Docker engine (see package test/images): one OCI
// archive per image and its SBOM, in bin/images/ (or -out / $IMAGES_DIR).
//
//	make image                       (test/tools/image.sh runs it when no Docker engine answers)
//	go run ./test/cmd/image-build -root . -out /tmp/images
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ramvault/ramvault/test/images"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o := images.Options{Log: os.Stdout}
	fs := flag.NewFlagSet("image-build", flag.ContinueOnError)
	fs.StringVar(&o.Root, "root", ".", "the ramvault checkout")
	fs.StringVar(&o.Out, "out", "", "directory of the archives and SBOMs (default $IMAGES_DIR, else ROOT/bin/images)")
	fs.StringVar(&o.Version, "version", "", "release version (default: the VERSION file)")
	fs.StringVar(&o.Revision, "revision", "", "git commit for the revision label (default: HEAD)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		return fmt.Errorf("-root %s: no Dockerfile there: give the ramvault checkout", o.Root)
	}
	o.Root = root
	if o.Out == "" {
		o.Out = images.Dir(root)
	}
	if o.Version == "" {
		if o.Version, err = images.ReadVersion(root); err != nil {
			return err
		}
	}
	if o.Revision == "" {
		if o.Revision, err = images.Revision(root); err != nil {
			return err
		}
	}
	// Created at the commit's time: the same commit and sources give the
	// same images, so the stack does not roll its Deployment for nothing.
	ct, err := git(root, "log", "-1", "--format=%ct", o.Revision)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return fmt.Errorf("commit time %q: %w", ct, err)
	}
	o.Created = time.Unix(sec, 0)
	o.Out, _ = filepath.Abs(o.Out)
	return images.Build(ctx, o)
}

func git(root string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
