// Command ramvault-agent is the per-Pod agent (init and sidecar modes).
// At this stage it only reports its version.
package main

import (
	"fmt"
	"os"

	"github.com/ramvault/ramvault/pkg/version"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(version.String("ramvault-agent"))
		return
	}
	fmt.Fprintln(os.Stderr, "usage: ramvault-agent version")
	os.Exit(2)
}
