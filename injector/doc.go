// Package injector is the admission side of ramvault: Inject mutates a typed
// Pod (adds the agent, its volumes and the app's read-only mount), Patch and
// PatchRaw turn the change into the JSONPatch a webhook answers, Handler
// serves AdmissionReviews with them, RunWebhook is `ramvault webhook` (TLS
// from files or self-managed, metrics, events) and RunCLI the offline
// `ramvault inject` / `ramvault lint`. See README.md for the model.
package injector
