// Package injector is the admission side of ramvault: decode an
// AdmissionReview, mutate the typed Pod, answer with a JSONPatch. (Next issue.)
package injector
