// Command kube-scheduler is the upstream Kubernetes kube-scheduler v1.34.4, built from the Go module
// proxy for ramvault's local test stack. Only the command constructor is called.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
