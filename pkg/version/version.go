// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/ramvault/ramvault/pkg/version.Version=...".
package version

// Version is the ramvault release this binary was built from.
var Version = "dev"

// String is the one-line form both binaries print for `version`.
func String(binary string) string {
	return binary + " " + Version
}
