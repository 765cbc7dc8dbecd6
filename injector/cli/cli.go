// Package cli is the command line of ramvault: `ramvault inject` and
// `lint` over manifests, `ramvault webhook` (its flags, their validation and
// the wiring of the webhook's parts), `ramvault version`.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/podstatus"
	"github.com/ramvault/ramvault/pkg/version"
)

// Exit codes of the command line.
const (
	exitOK      = 0
	exitInvalid = 1 // denied or unreadable objects
	exitUsage   = 2
)

const usage = `ramvault: inject Pods with the ramvault agent.

Usage:
  ramvault inject -f FILE|- [flags]   print the manifests with the agent injected
  ramvault lint -f FILE|- [flags]     only check the ramvault.io/ annotations
  ramvault migrate -f FILE|-          rewrite vault-k8s annotations as ramvault.io/ ones
  ramvault status pod/NAME|deploy/NAME [-n NS] [-o json]
                                      ask a Pod's agent what it holds ('ramvault status -h')
  ramvault webhook [flags]            serve the admission webhook ('ramvault webhook -h')
  ramvault version

FILE holds YAML documents (separated by ---) or JSON objects. The Pods of Pods,
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,
Jobs and CronJobs are injected; other objects pass unchanged. Every problem of
every object is reported; then the exit code is 1 and nothing is printed.
Run 'ramvault inject -h' for the flags (the cluster defaults of the injector).
`

// RunCLI runs the command line (args without the program name) and returns
// the exit code.
func RunCLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintln(stdout, version.String("ramvault"))
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "inject", "lint":
		cfg, file, err := parseFlags(args[0], args[1:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(stderr, "ramvault %s: %v\n", args[0], err)
			return exitUsage
		}
		return runManifests(ctx, cfg, file, args[0] == "inject", stdin, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, args[1:], stderr)
	case "migrate":
		return runMigrate(ctx, args[1:], stdin, stdout, stderr)
	case "status":
		return podstatus.Run(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "ramvault: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// parseFlags reads the flags of inject and lint: the file and the cluster
// defaults, which the webhook takes too (bindDefaults).
func parseFlags(cmd string, args []string, stderr io.Writer) (cfg injector.Config, file string, err error) {
	cfg = defaultConfig()
	fs := flag.NewFlagSet("ramvault "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&file, "f", "", "manifest file, - for standard input (required)")
	defaults := bindDefaults(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, file, err
	}
	if fs.NArg() > 0 {
		return cfg, file, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if file == "" {
		return cfg, file, errors.New("-f FILE is required (- for standard input)")
	}
	if err := defaults.apply(); err != nil {
		return cfg, file, err
	}
	// lint checks the manifest: without the cluster's Vault addresses (no
	// --vault-addr, --allowed-vault-addrs or --config), it does not check
	// the Pods against them. inject must write a real address.
	cfg.VaultAddrsUnknown = cmd == "lint"
	return cfg, file, cfg.Validate()
}

// runManifests injects (or only checks) every object of the manifest file.
func runManifests(ctx context.Context, cfg injector.Config, file string, write bool, stdin io.Reader, stdout, stderr io.Writer) int {
	in := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		defer f.Close()
		in = f
	}
	docs, err := readDocuments(in)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", file, err)
		return exitInvalid
	}
	var out [][]byte
	var problems []string
	for i, raw := range docs {
		if err := ctx.Err(); err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
		obj, err := newObject(i+1, raw)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		doc, err := obj.inject(cfg)
		if err != nil {
			problems = append(problems, obj.errorLines(err)...)
			continue
		}
		y, err := yaml.JSONToYAML(doc)
		if err != nil {
			problems = append(problems, obj.label+": "+err.Error())
			continue
		}
		out = append(out, y)
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, strings.Join(problems, "\n"))
		return exitInvalid
	}
	if write {
		for i, y := range out {
			if i > 0 {
				fmt.Fprintln(stdout, "---")
			}
			stdout.Write(y)
		}
	}
	return exitOK
}

// listFlag is a comma-separated list.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(v string) error {
	*l.p = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.p = append(*l.p, s)
		}
	}
	return nil
}

// resourcesFlag is a resource list written like cpu=10m,memory=16Mi.
type resourcesFlag struct{ p *corev1.ResourceList }

func (r resourcesFlag) String() string {
	if r.p == nil {
		return ""
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(*r.p)) {
		q := (*r.p)[name]
		parts = append(parts, string(name)+"="+q.String())
	}
	return strings.Join(parts, ",")
}

func (r resourcesFlag) Set(v string) error {
	list := corev1.ResourceList{}
	for _, kv := range strings.Split(v, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%q: want name=quantity, e.g. cpu=10m,memory=16Mi", kv)
		}
		q, err := resource.ParseQuantity(val)
		if err != nil {
			return fmt.Errorf("%q: %v", kv, err)
		}
		list[corev1.ResourceName(name)] = q
	}
	*r.p = list
	return nil
}
