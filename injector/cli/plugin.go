package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ramvault/ramvault/pkg/version"
)

const pluginUsage = `kubectl ramvault: ramvault from kubectl.

Usage:
  kubectl ramvault status pod/NAME|NAME|deploy/NAME... [-n NS] [-o table|json] [--context CTX] [--kubeconfig FILE]
                                          ask each Pod's agent which secrets it holds ('kubectl ramvault status -h')
  kubectl ramvault inject -f FILE|- [flags]  print the manifests with the agent injected
  kubectl ramvault lint -f FILE|- [flags]    only check the ramvault.io/ annotations
  kubectl ramvault version
`

// RunKubectlPlugin is kubectl-ramvault, the kubectl plugin (args without
// the program name): status, inject, lint, version. It returns the exit
// code.
func RunKubectlPlugin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return exitUsage
	}
	switch args[0] {
	case "status", "inject", "lint":
		return RunCLI(ctx, args, stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.String("kubectl-ramvault"))
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, pluginUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "kubectl ramvault: unknown command %q\n\n%s", args[0], pluginUsage)
	return exitUsage
}
