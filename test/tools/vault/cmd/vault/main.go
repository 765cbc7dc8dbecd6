// Command vault is the HashiCorp Vault 1.21.0 server and CLI, built from the Go
// module proxy as a test dependency of ramvault only (BSL: never shipped).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
