package sidecar

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ramvault/ramvault/pkg/spec"
)

// awaitStartup is `ramvault-agent await-startup`: it waits until the agent
// answering on addr (the one in this container) has written every secret,
// then exits 0; after timeout it exits 1 saying what the agent last
// answered. The injector runs it as the native sidecar's postStart hook: the
// kubelet starts the app containers once a restartable init container without
// a startup probe is running and its postStart hook has returned, so the app
// starts as soon as the files are there, not at the next tick of a probe.
// The answers it relays are the agent's own words ("secrets not written
// yet"), never a value.
func awaitStartup(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ramvault-agent "+spec.AwaitStartup, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", spec.AgentHealthPort), "the agent's health address")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up (exit 1) after this long")
	interval := fs.Duration("interval", 20*time.Millisecond, "time between two asks")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *timeout <= 0 || *interval <= 0 {
		fmt.Fprintf(stderr, "ramvault-agent %s: want only --addr, and a positive --timeout and --interval\n", spec.AwaitStartup)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	url := "http://" + *addr + "/startup"
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return 0
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else if ctx.Err() == nil {
			last = err.Error()
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintf(stderr, "ramvault-agent: secrets not written within %s (the agent's last answer: %s); its log says why\n", *timeout, last)
			return 1
		case <-t.C:
		}
	}
}

// sleepFor is `ramvault-agent sleep DURATION`, the classic sidecar's preStop
// hook: the kubelet sends the sidecar SIGTERM, and the agent revokes the
// Pod's credentials, only once it returns, so the app, stopped at the same
// time, has that long to finish with them.
func sleepFor(ctx context.Context, args []string, stderr io.Writer) int {
	var d time.Duration
	var err error
	if len(args) == 1 {
		d, err = time.ParseDuration(args[0])
	}
	if len(args) != 1 || err != nil || d < 0 {
		fmt.Fprintf(stderr, "ramvault-agent %s: want one duration, such as 5s\n", spec.AgentSleep)
		return 2
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return 0
}
