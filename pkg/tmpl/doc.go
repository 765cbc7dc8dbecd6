// Package tmpl is ramvault's template engine: Go text/template with
// consul-template's functions and output, every Vault dependency known before
// the render, bounded renders, and errors that never print a secret value.
// It imports nothing from Kubernetes: the agent links it.
//
// # Use
//
// The injector calls Parse (or Check) at admission and denies the Pod with
// the ErrorList: every problem at once, each with the template name,
// line:col, the expression and what to change. The agent calls Parse at
// start, collects Dependencies and Refs of all the Pod's templates, fetches
// each distinct Dependency.Key once, then calls Execute for each file with a
// Lookup over what it fetched.
//
// # The caller's contract
//
//   - Dependencies: `secret "<path>"` is a read; `secret "<path>" "k=v"…`
//     (any argument, even "") is a write with those arguments;
//     `pkiCert "<path>" "k=v"…` is always a write. Paths are given without
//     leading or trailing '/' (trimmed, as consul-template does); a
//     `?version=N` on a read is Dependency.Version. Same Key, same request,
//     whatever the Kind: a pkiCert and a secret with the same arguments
//     share one issuance.
//   - KV v2: the template writes `secret "secret/app"`; the caller, which
//     knows the mount's version (one lookup per mount), reads
//     `secret/data/app` and answers with that response unchanged, so the
//     template sees `.Data.data` and `.Data.metadata`, as in
//     consul-template. A path that already has `data/` is not rewritten
//     again. KV v1 and leased secrets are answered as they come: `.Data`.
//   - Secret.Data is decoded as github.com/hashicorp/vault/api decodes it
//     (numbers are json.Number), so values print as in Vault Agent.
//   - Refs and Dot are in the one-secret shape: KV v2 already unwrapped
//     (`.Data` is the key/values), as ramvault's one-secret templates see
//     today. `ref "db"` is the Pod's ramvault.io/secret-db.
//   - pkiCert: the caller answers the write with the raw PKI response; the
//     template sees its PEM blocks sorted into Cert, Key, CA, CAChain.
//     Unlike consul-template, the engine never reads the destination file to
//     reuse a still-valid certificate: re-issue is the caller's schedule.
//   - A Lookup error or a nil answer: the error stops the render (its text is
//     not printed, errors.Unwrap gives it); nil makes `with secret …` skip.
//   - Dependencies in branches not taken are fetched all the same (they are
//     known statically); consul-template fetches only those it reaches.
//
// # Limits
//
// text/template cannot be interrupted, so every way a render can run long or
// grow large is bounded (Limits; defaults in parentheses):
//   - Output (4 MiB): the writer fails the write that passes it.
//   - Work (64 MiB): every string-building call pays an upper bound of its
//     result before it allocates (replaceAll, join, printf widths, indent,
//     toJSONPretty of deep data …).
//   - Steps (1,000,000): a counter inserted at the top of every range body
//     and defined template charges that body's node count at each pass;
//     every function call is a step. Recursive templates are refused at
//     parse, and so is a constant `range N` or `loop N` above the limit.
//   - Time (2s): checked at every step.
//
// # Errors
//
// text/template's execution errors can embed values ("range can't iterate
// over <value>", "index out of range: N"). Execute rebuilds each one from the
// position and the source expression and keeps the reason only in its
// value-free forms; functions here only return messages built from types and
// constants. As a last check, an error whose text still contains a string of
// the data the render saw keeps only its position.
//
// The functions, their origin and meaning are in docs/templates.md,
// generated from the table in funcs.go (Markdown).
package tmpl
