// Command ramvault is the injector: admission webhook server and offline CLI.
// At this stage it only reports its version.
package main

import (
	"fmt"
	"os"

	"github.com/ramvault/ramvault/pkg/version"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println(version.String("ramvault"))
		return
	}
	fmt.Fprintln(os.Stderr, "usage: ramvault version")
	os.Exit(2)
}
