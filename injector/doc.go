// Package injector is the admission side of ramvault: Inject mutates a typed
// Pod (adds the agent, its volumes and the app's read-only mount), Patch turns
// the change into the JSONPatch a webhook answers, and RunCLI is the offline
// `ramvault inject` / `ramvault lint`. See README.md for the model.
package injector
