// Package spec is ramvault's annotation specification: one typed table from
// which parsing, defaulting, validation, error messages and the reference
// documentation (docs/annotations.md) all derive. Both the injector and the
// agent use it, so it imports nothing from Kubernetes.
package spec
