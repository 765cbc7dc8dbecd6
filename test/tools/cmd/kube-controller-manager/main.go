// Command kube-controller-manager is the upstream Kubernetes kube-controller-manager v1.34.4, built from the Go module
// proxy for ramvault's local test stack. Only the command constructor is called.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
