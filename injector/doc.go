// Package injector is the mutation at the heart of ramvault: Inject adds
// the agent, its volumes and the app's read-only mount to a typed Pod that
// opted in, or reports every problem at once, each naming the annotation
// or field to change. Config holds the cluster's defaults and Validate
// checks them. The package is pure (it imports the Kubernetes API types,
// pkg/spec and the standard library only); what serves it lives in the
// sub-packages: patch (the JSONPatch of a change), admission (the webhook's
// handler), servingcert, leaderelection and kube (the webhook's TLS, its
// Lease and its apiserver client), cli (`ramvault inject`, `lint`,
// `webhook`). See README.md for the model.
package injector
