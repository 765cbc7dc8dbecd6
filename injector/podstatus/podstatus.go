// Package podstatus is `kubectl ramvault status` (and `ramvault status`):
// it asks the agent of each Pod named what it holds — its GET /status on
// the health port, through the apiserver's pod proxy, with the user's
// kubeconfig — and prints it as a table or JSON. Never a value, a token or
// a lease ID: the agent does not serve them.
//
// It imports client-go; the agent never imports it.
package podstatus

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ramvault/ramvault/injector"
	"github.com/ramvault/ramvault/injector/kube"
	"github.com/ramvault/ramvault/pkg/spec"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a Pod could not be asked
	exitUsage = 2
)

// Usage is the command's help.
const Usage = `Usage: status (pod/NAME | NAME | deploy/NAME)... [-n NAMESPACE] [-o table|json] [--context CTX] [--kubeconfig FILE]

Asks the ramvault agent of each Pod (of a Deployment: every Pod its selector
matches) which secrets it holds: path, kind, when fetched, when they expire or
are next refreshed, the last renewal, reload and error, and the agent's mode
and version. Never a value, a token or a lease ID.

It reads the agent's /status through the apiserver's pod proxy
(GET /api/v1/namespaces/NS/pods/NAME:8099/proxy/status) and needs, in the
namespace: get pods; get on pods/proxy (the default "edit" and "admin"
roles grant it, "view" does not); for deploy/NAME also get deployments (apps)
and list pods.
`

// options are the command's flags and arguments.
type options struct {
	namespace, kubeconfig, context, output string
	targets                                []string
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, Usage) }
	fs.StringVar(&o.namespace, "n", "", "namespace (default: the kubeconfig context's)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace (default: the kubeconfig context's)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVar(&o.output, "o", "table", "output: table or json")
	fs.StringVar(&o.output, "output", "table", "output: table or json")
	// Flags and Pods in any order, as kubectl takes them.
	for {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		if fs.NArg() == 0 {
			break
		}
		o.targets = append(o.targets, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(o.targets) == 0 {
		return o, errors.New("name a Pod (pod/NAME or NAME) or a Deployment (deploy/NAME)")
	}
	for _, t := range o.targets {
		if kind, name, ok := strings.Cut(t, "/"); ok && (podKinds[strings.ToLower(kind)] == deploymentKinds[strings.ToLower(kind)] || name == "") {
			return o, fmt.Errorf("%q: want pod/NAME, NAME or deploy/NAME", t)
		}
	}
	if o.output != "table" && o.output != "json" {
		return o, fmt.Errorf("-o %q: want table or json", o.output)
	}
	return o, nil
}

// Run is the command (args after "status"); it returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "status: %v\n\n%s", err, Usage)
		return exitUsage
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // $KUBECONFIG, ~/.kube/config
	rules.ExplicitPath = o.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.context})
	ns := o.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil && !clientcmd.IsEmptyConfig(err) {
			fmt.Fprintf(stderr, "status: kubeconfig: %v\n", err)
			return exitError
		}
	}
	rc, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		fmt.Fprintln(stderr, "status: no kubeconfig: set KUBECONFIG or pass --kubeconfig FILE")
		return exitError
	}
	if err != nil {
		fmt.Fprintf(stderr, "status: kubeconfig: %v\n", err)
		return exitError
	}
	cs, err := kube.New(rc)
	if err != nil {
		fmt.Fprintf(stderr, "status: %v\n", err)
		return exitError
	}
	return run(ctx, cs, ns, o, time.Now, stdout, stderr)
}

// clients are the calls status makes. *kube.Client makes them with a
// scheme of only the kinds it reads: client-go's typed clients would link
// every API group's types (the ramvault binary went from 26 to 50 MB).
type clients interface {
	Pods(ns string) kube.Resource
	Deployments(ns string) kube.Resource
	PodProxyGet(ctx context.Context, ns, name string, port int, path string) ([]byte, error)
}

// Result is one Pod's answer: the agent's document as it sent it, or why
// there is none.
type Result struct {
	Namespace string          `json:"namespace"`
	Pod       string          `json:"pod"`
	Status    json.RawMessage `json:"status,omitempty"`
	Error     string          `json:"error,omitempty"`
}

func run(ctx context.Context, cs clients, ns string, o options, now func() time.Time, stdout, stderr io.Writer) int {
	var results []Result
	code := exitOK
	for _, t := range o.targets {
		pods, err := resolve(ctx, cs, ns, t)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", t, err)
			code = exitError
			continue
		}
		for _, p := range pods {
			r := Result{Namespace: ns, Pod: p.Name}
			r.Status, err = ask(ctx, cs, p)
			if err != nil {
				r.Error = err.Error()
				code = exitError
			}
			results = append(results, r)
		}
	}
	if o.output == "json" {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return code
	}
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if r.Error != "" {
			fmt.Fprintf(stderr, "pod %s/%s: %s\n", r.Namespace, r.Pod, r.Error)
			continue
		}
		if err := renderTable(stdout, r, now()); err != nil {
			fmt.Fprintf(stderr, "pod %s/%s: the agent's answer: %v\n", r.Namespace, r.Pod, err)
			code = exitError
		}
	}
	return code
}

var (
	podKinds        = map[string]bool{"pod": true, "pods": true, "po": true}
	deploymentKinds = map[string]bool{"deploy": true, "deployment": true, "deployments": true, "deployment.apps": true, "deployments.apps": true}
)

// resolve is the Pods a target names: pod/NAME (po/, pods/), NAME, or
// deploy/NAME (deployment/, deployments/): every Pod of its selector.
func resolve(ctx context.Context, cs clients, ns, target string) ([]corev1.Pod, error) {
	kind, name, ok := strings.Cut(target, "/")
	if !ok {
		kind, name = "pod", target
	}
	switch kind = strings.ToLower(kind); {
	case podKinds[kind]:
		var p corev1.Pod
		if err := cs.Pods(ns).Get(ctx, name, &p); err != nil {
			return nil, explain(err, "get pods", ns)
		}
		return []corev1.Pod{p}, nil
	case deploymentKinds[kind]:
		var d appsv1.Deployment
		if err := cs.Deployments(ns).Get(ctx, name, &d); err != nil {
			return nil, explain(err, "get deployments (apps)", ns)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("deployment %s/%s: selector: %w", ns, name, err)
		}
		var list corev1.PodList
		if err := cs.Pods(ns).List(ctx, sel.String(), &list); err != nil {
			return nil, explain(err, "list pods", ns)
		}
		if len(list.Items) == 0 {
			return nil, fmt.Errorf("deployment %s/%s has no Pods (selector %s)", ns, name, sel)
		}
		return list.Items, nil
	}
	return nil, fmt.Errorf("%q: want pod/NAME, NAME or deploy/NAME", kind)
}

// explain turns an API error into what to do: for a denial, the verb the
// user's RBAC lacks.
func explain(err error, verb, ns string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden: your RBAC lacks %q in namespace %s (ask for a Role granting it; see 'kubectl ramvault status -h'): %w", verb, ns, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("unauthorized: the kubeconfig's credentials were refused: %w", err)
	}
	return err
}

// ask reads the agent's /status through the pod proxy, after checking that
// the Pod has an agent that can answer.
func ask(ctx context.Context, cs clients, p corev1.Pod) (json.RawMessage, error) {
	if err := askable(p); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := cs.PodProxyGet(cctx, p.Namespace, p.Name, spec.AgentHealthPort, "status")
	switch {
	case err == nil:
	case apierrors.IsForbidden(err):
		return nil, explain(err, "get pods/proxy", p.Namespace)
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("the agent has no /status endpoint (an agent image older than this plugin: upgrade it): %w", err)
	default:
		return nil, fmt.Errorf("asking the agent through the pod proxy: %w%s", err, causes(err))
	}
	if !json.Valid(b) {
		return nil, errors.New("the agent's /status did not answer JSON")
	}
	return b, nil
}

// askable says why a Pod's agent cannot be asked: not injected, init-only
// (nothing runs to ask), or the agent not running.
func askable(p corev1.Pod) error {
	hasSidecar, hasInit := false, false
	for _, c := range p.Spec.InitContainers {
		switch {
		case c.Name == injector.AgentContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways:
			hasSidecar = true // native sidecar
		case c.Name == injector.AgentInitContainer:
			hasInit = true
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name == injector.AgentContainer {
			hasSidecar = true // classic sidecar
		}
	}
	switch {
	case !hasSidecar && !hasInit:
		return fmt.Errorf("not injected: no %s container (was the Pod created with the annotation ramvault.io/inject: \"true\", with the webhook running? 'ramvault lint -f' tells what it would do)", injector.AgentContainer)
	case !hasSidecar:
		return fmt.Errorf("the agent runs in init-only mode: it wrote the files and exited, there is no sidecar to ask; what it said is in its init container's state:\n  %s\n  (kubectl get pod %s -n %s -o jsonpath='{.status.initContainerStatuses[?(@.name==\"%s\")].state}')",
			initState(p), p.Name, p.Namespace, injector.AgentInitContainer)
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return fmt.Errorf("the Pod has ended (%s): its agent is gone", p.Status.Phase)
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if s.Name != injector.AgentContainer {
			continue
		}
		if s.State.Running == nil {
			msg := fmt.Sprintf("the agent container %s is not running (%s)", injector.AgentContainer, describeState(s.State))
			if t := s.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf("; it last ended with exit code %d: %s", t.ExitCode, strings.TrimSpace(t.Message))
			}
			if hasInit {
				msg += "; the init container's state: " + initState(p)
			}
			return errors.New(msg)
		}
		return nil
	}
	return fmt.Errorf("the agent container %s has not started yet (Pod %s)", injector.AgentContainer, p.Status.Phase)
}

func initState(p corev1.Pod) string {
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == injector.AgentInitContainer {
			return describeState(s.State)
		}
	}
	return "not started"
}

func describeState(st corev1.ContainerState) string {
	switch {
	case st.Running != nil:
		return "running"
	case st.Terminated != nil:
		t := st.Terminated
		s := fmt.Sprintf("terminated, exit code %d", t.ExitCode)
		if t.Reason != "" {
			s += " (" + t.Reason + ")"
		}
		if m := strings.TrimSpace(t.Message); m != "" {
			s += ": " + m
		}
		return s
	case st.Waiting != nil:
		s := "waiting: " + st.Waiting.Reason
		if st.Waiting.Message != "" {
			s += ": " + st.Waiting.Message
		}
		return s
	}
	return "unknown"
}

// causes is what a proxy error's answer said (client-go keeps a body that
// is not a Status, such as the proxy's "connection refused", as a cause).
func causes(err error) string {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range se.ErrStatus.Details.Causes {
		if m := strings.TrimSpace(c.Message); m != "" && !strings.Contains(err.Error(), m) {
			b.WriteString(": " + m)
		}
	}
	return b.String()
}
