package tmpl

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"github.com/ramvault/ramvault/pkg/didyoumean"
)

// Origin says where a function's name and behaviour come from.
type Origin string

const (
	// OriginConsulTemplate: consul-template v0.41.1's function (the version
	// Vault Agent 1.21.0 embeds), same name, same output.
	OriginConsulTemplate Origin = "consul-template"
	// OriginGo: a text/template builtin, bounded here.
	OriginGo Origin = "text/template"
	// OriginRamvault: ramvault's own (one-secret templates and extensions).
	OriginRamvault Origin = "ramvault"
)

// fn is one row of the function table: it drives the function map, the
// parse-time check and the generated reference (docs/templates.md).
type fn struct {
	Name   string
	Args   string // as written in a template
	Origin Origin
	Doc    string
	// make builds the function for one render.
	make func(r *run) any
	// cost, when set, is an upper bound of the bytes the call will produce,
	// charged before the call (so a chain of replaceAll or a huge printf
	// width fails instead of allocating).
	cost func(args []any) int64
}

// functions is the table. Order is the order of the reference.
func functions() []fn {
	return []fn{
		// Vault.
		{Name: "secret", Args: `"<path>" ["k=v" …]`, Origin: OriginConsulTemplate,
			Doc:  "Reads (no arguments) or writes (k=v arguments) a Vault path; returns `.Data`, `.LeaseID`, `.LeaseDuration`, `.Renewable`, `.Warnings`. KV v2: `.Data.data`, `.Data.metadata`. Arguments must be string constants.",
			make: func(r *run) any { return r.secret }},
		{Name: "pkiCert", Args: `"<path>" ["k=v" …]`, Origin: OriginConsulTemplate,
			Doc:  "Issues a certificate (a write); returns `.Cert`, `.Key`, `.CA` and `.CAChain` as PEM, each ending in a newline. The same path and arguments as a `secret` call are the same issuance.",
			make: func(r *run) any { return r.pkiCert }},
		{Name: "ref", Args: `"<name>"`, Origin: OriginRamvault,
			Doc:  "The secret the Pod defines as `ramvault.io/secret-<name>`, shaped like a one-secret template's dot (`.Data` holds the key/values, KV v2 unwrapped).",
			make: func(r *run) any { return r.ref }},
		{Name: "pkcs12", Args: `CERT KEY PASSWORD [CA …]`, Origin: OriginRamvault,
			Doc:  "A PKCS#12 keystore (binary) of the PEM certificate (the leaf first; more certificates in CERT join the chain), the PEM private key and the CA chain (strings or lists of PEM), encrypted with PASSWORD (AES-256-CBC, PBKDF2-SHA-256, SHA-256 MAC: OpenSSL 3 and Java 11+ read it). The same inputs give the same bytes. Replaces `openssl pkcs12 -export` in agent-inject-command.",
			make: func(r *run) any { return pkcs12Func }, cost: sumCost(4, 8192)},

		// Encoding.
		{Name: "base64Decode", Args: "S", Origin: OriginConsulTemplate, Doc: "Standard base64 decode.", make: pure(base64Decode), cost: sumCost(1, 0)},
		{Name: "base64Encode", Args: "S", Origin: OriginConsulTemplate, Doc: "Standard base64 encode.", make: pure(base64Encode), cost: sumCost(2, 4)},
		{Name: "base64URLDecode", Args: "S", Origin: OriginConsulTemplate, Doc: "URL-safe base64 decode (padded).", make: pure(base64URLDecode), cost: sumCost(1, 0)},
		{Name: "base64URLEncode", Args: "S", Origin: OriginConsulTemplate, Doc: "URL-safe base64 encode (padded).", make: pure(base64URLEncode), cost: sumCost(2, 4)},
		{Name: "toJSON", Args: "V", Origin: OriginConsulTemplate, Doc: "Compact JSON (HTML characters escaped, as encoding/json does).", make: pure(toJSON), cost: jsonCost(0)},
		{Name: "toJSONPretty", Args: "V", Origin: OriginConsulTemplate, Doc: "JSON indented by two spaces.", make: pure(toJSONPretty), cost: jsonCost(2)},
		{Name: "toUnescapedJSON", Args: "V", Origin: OriginConsulTemplate, Doc: "Compact JSON without HTML escaping.", make: pure(toUnescapedJSON), cost: jsonCost(0)},
		{Name: "toUnescapedJSONPretty", Args: "V", Origin: OriginConsulTemplate, Doc: "Indented JSON without HTML escaping.", make: pure(toUnescapedJSONPretty), cost: jsonCost(2)},
		{Name: "toYAML", Args: "V", Origin: OriginConsulTemplate, Doc: "YAML as gopkg.in/yaml.v2 writes it (keys sorted), trimmed. Was ramvault's own JSON-scalar YAML before: the name now means consul-template's.", make: pure(toYAML), cost: jsonCost(4)},
		{Name: "parseJSON", Args: "S", Origin: OriginConsulTemplate, Doc: "Decodes JSON (an empty string gives an empty map).", make: pure(parseJSON), cost: sumCost(8, 64)},
		{Name: "parseYAML", Args: "S", Origin: OriginConsulTemplate, Doc: "Decodes YAML (an empty string gives an empty map).", make: pure(parseYAML), cost: sumCost(8, 64)},
		{Name: "parseBool", Args: "S", Origin: OriginConsulTemplate, Doc: "strconv.ParseBool; empty is false.", make: pure(parseBool)},
		{Name: "parseFloat", Args: "S", Origin: OriginConsulTemplate, Doc: "strconv.ParseFloat; empty is 0.", make: pure(parseFloat)},
		{Name: "parseInt", Args: "S", Origin: OriginConsulTemplate, Doc: "Base-10 int64; empty is 0.", make: pure(parseInt)},
		{Name: "parseUint", Args: "S", Origin: OriginConsulTemplate, Doc: "Base-10 uint64; empty is 0.", make: pure(parseUint)},

		// Strings.
		{Name: "contains", Args: "NEEDLE HAYSTACK", Origin: OriginConsulTemplate, Doc: "HAYSTACK (a list or a string) contains NEEDLE: pipe the haystack, `{{ .list | contains \"x\" }}`.", make: pure(contains)},
		{Name: "in", Args: "HAYSTACK NEEDLE", Origin: OriginConsulTemplate, Doc: "`contains` with the arguments the other way round.", make: pure(in)},
		{Name: "containsAll", Args: "NEEDLES HAYSTACK", Origin: OriginConsulTemplate, Doc: "Every needle is in the haystack.", make: pure(containsSome(true, true))},
		{Name: "containsAny", Args: "NEEDLES HAYSTACK", Origin: OriginConsulTemplate, Doc: "Some needle is in the haystack.", make: pure(containsSome(false, false))},
		{Name: "containsNone", Args: "NEEDLES HAYSTACK", Origin: OriginConsulTemplate, Doc: "No needle is in the haystack.", make: pure(containsSome(true, false))},
		{Name: "containsNotAll", Args: "NEEDLES HAYSTACK", Origin: OriginConsulTemplate, Doc: "Some needle is not in the haystack.", make: pure(containsSome(false, true))},
		{Name: "split", Args: "SEP S", Origin: OriginConsulTemplate, Doc: "Splits S (trimmed of spaces first; empty gives an empty list).", make: pure(split), cost: splitCost},
		{Name: "splitToMap", Args: "SEP KVSEP S", Origin: OriginConsulTemplate, Doc: "Splits S into k/v pairs; pairs without KVSEP are dropped.", make: pure(splitToMap), cost: splitCost},
		{Name: "join", Args: "SEP LIST", Origin: OriginConsulTemplate, Doc: "Joins a list of strings.", make: pure(join), cost: joinCost},
		{Name: "replaceAll", Args: "OLD NEW S", Origin: OriginConsulTemplate, Doc: "Replaces every OLD in S by NEW.", make: pure(replaceAll), cost: replaceCost},
		{Name: "regexReplaceAll", Args: "RE REPL S", Origin: OriginConsulTemplate, Doc: "Replaces every match of RE (Go syntax, `$1` expands) in S.", make: func(r *run) any { return r.regexReplaceAll }},
		{Name: "regexMatch", Args: "RE S", Origin: OriginConsulTemplate, Doc: "S matches RE.", make: pure(regexMatch)},
		{Name: "trim", Args: "[CUTSET] S", Origin: OriginConsulTemplate, Doc: "With two arguments, consul-template's `trim`: strips the characters of CUTSET from both ends of S. With one, ramvault's older `trim`: strips spaces (same as `trimSpace`).", make: pure(trim)},
		{Name: "trimPrefix", Args: "PREFIX S", Origin: OriginConsulTemplate, Doc: "strings.TrimPrefix.", make: pure(trimPrefix)},
		{Name: "trimSuffix", Args: "SUFFIX S", Origin: OriginConsulTemplate, Doc: "strings.TrimSuffix.", make: pure(trimSuffix)},
		{Name: "trimSpace", Args: "S", Origin: OriginConsulTemplate, Doc: "strings.TrimSpace.", make: pure(trimSpace)},
		{Name: "toLower", Args: "S", Origin: OriginConsulTemplate, Doc: "strings.ToLower.", make: pure(toLower), cost: sumCost(3, 0)},
		{Name: "toUpper", Args: "S", Origin: OriginConsulTemplate, Doc: "strings.ToUpper.", make: pure(toUpper), cost: sumCost(3, 0)},
		{Name: "toTitle", Args: "S", Origin: OriginConsulTemplate, Doc: "Upper-cases the first letter of each word, leaves the rest (golang.org/x/text/cases Title, NoLower).", make: pure(toTitle), cost: sumCost(3, 0)},
		{Name: "indent", Args: "N S", Origin: OriginConsulTemplate, Doc: "Prefixes each non-empty line of S with N spaces.", make: pure(indent), cost: indentCost},
		{Name: "sha256Hex", Args: "S", Origin: OriginConsulTemplate, Doc: "Hex SHA-256 of S.", make: pure(sha256Hex)},
		{Name: "md5sum", Args: "S", Origin: OriginConsulTemplate, Doc: "Hex MD5 of S.", make: pure(md5sum)},
		{Name: "hmacSHA256Hex", Args: "MESSAGE KEY", Origin: OriginConsulTemplate, Doc: "Hex HMAC-SHA-256 of MESSAGE with KEY.", make: pure(hmacSHA256Hex)},
		{Name: "timestamp", Args: `["unix" | LAYOUT]`, Origin: OriginConsulTemplate, Doc: "The time of the render: RFC 3339, Unix seconds with \"unix\", or a Go layout.", make: func(r *run) any { return r.timestamp }},
		{Name: "explodeMap", Args: "MAP", Origin: OriginConsulTemplate, Doc: "Turns `a/b` keys into nested maps.", make: pure(explodeMap), cost: jsonCost(0)},
		{Name: "loop", Args: "[START] STOP", Origin: OriginConsulTemplate, Doc: "The integers START (default 0) to STOP-1, for `range`; each pass is a step.", make: pure(loop)},

		// Arithmetic (consul-template's argument order: `{{ 3 | subtract 1 }}` is 2).
		{Name: "add", Args: "B A", Origin: OriginConsulTemplate, Doc: "A + B.", make: pure(arith("add", '+'))},
		{Name: "subtract", Args: "B A", Origin: OriginConsulTemplate, Doc: "A - B.", make: pure(arith("subtract", '-'))},
		{Name: "multiply", Args: "B A", Origin: OriginConsulTemplate, Doc: "A * B.", make: pure(arith("multiply", '*'))},
		{Name: "divide", Args: "B A", Origin: OriginConsulTemplate, Doc: "A / B (integer division for integers; division by zero is an error).", make: pure(arith("divide", '/'))},
		{Name: "modulo", Args: "B A", Origin: OriginConsulTemplate, Doc: "A % B (integers only).", make: pure(arith("modulo", '%'))},

		// text/template builtins that build strings, bounded.
		{Name: "printf", Args: "FORMAT ARGS…", Origin: OriginGo, Doc: "fmt.Sprintf. Widths and precisions count against the limits.", make: pure(fmt.Sprintf), cost: printfCost},
		{Name: "print", Args: "ARGS…", Origin: OriginGo, Doc: "fmt.Sprint.", make: pure(fmt.Sprint), cost: jsonCost(0)},
		{Name: "println", Args: "ARGS…", Origin: OriginGo, Doc: "fmt.Sprintln.", make: pure(fmt.Sprintln), cost: jsonCost(0)},
		{Name: "html", Args: "ARGS…", Origin: OriginGo, Doc: "HTML-escapes.", make: pure(template.HTMLEscaper), cost: jsonCost(0, 6)},
		{Name: "js", Args: "ARGS…", Origin: OriginGo, Doc: "JavaScript-escapes.", make: pure(template.JSEscaper), cost: jsonCost(0, 6)},
		{Name: "urlquery", Args: "ARGS…", Origin: OriginGo, Doc: "Query-escapes.", make: pure(template.URLQueryEscaper), cost: jsonCost(0, 3)},

		// ramvault's one-secret functions, kept.
		{Name: "base64", Args: "S", Origin: OriginRamvault, Doc: "Same as `base64Encode`.", make: pure(func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }), cost: sumCost(2, 4)},
		{Name: "base64dec", Args: "S", Origin: OriginRamvault, Doc: "Same as `base64Decode`.", make: pure(base64Decode), cost: sumCost(1, 0)},
		{Name: "json", Args: "V", Origin: OriginRamvault, Doc: "Same as `toJSON`.", make: pure(toJSON), cost: jsonCost(0)},
		{Name: "lower", Args: "S", Origin: OriginRamvault, Doc: "Same as `toLower`.", make: pure(strings.ToLower), cost: sumCost(3, 0)},
		{Name: "upper", Args: "S", Origin: OriginRamvault, Doc: "Same as `toUpper`.", make: pure(strings.ToUpper), cost: sumCost(3, 0)},
		{Name: "default", Args: "DEFAULT V", Origin: OriginRamvault, Doc: "V, or DEFAULT when V is nil or an empty string (`{{ .Data.port | default \"5432\" }}`).", make: pure(defaultFunc)},
		{Name: "pemCert", Args: "DATA", Origin: OriginRamvault, Doc: "`certificate` of a PKI response's data, ending in one newline.", make: pure(func(d map[string]any) (string, error) { return pemField(d, "certificate") })},
		{Name: "pemKey", Args: "DATA", Origin: OriginRamvault, Doc: "`private_key` of a PKI response's data, ending in one newline.", make: pure(func(d map[string]any) (string, error) { return pemField(d, "private_key") })},
		{Name: "pemChain", Args: "DATA", Origin: OriginRamvault, Doc: "`certificate` followed by `ca_chain` (or `issuing_ca`), each ending in one newline.", make: pure(pemChain)},
	}
}

// builtins are text/template's own functions that are neither refused nor
// replaced above; they return existing values or booleans.
var builtins = []string{"and", "call", "eq", "ge", "gt", "index", "le", "len", "lt", "ne", "not", "or", "slice"}

// refusedFuncs are consul-template (and sprig) names that ramvault does not
// provide, each with the reason and the way to get the same result.
var refusedFuncs = map[string]string{
	"env":                   "it reads the agent's environment; put the value in a Vault secret, or give it to the app as its own env",
	"mustEnv":               "it reads the agent's environment; put the value in a Vault secret, or give it to the app as its own env",
	"envOrDefault":          "it reads the agent's environment; put the value in a Vault secret, or give it to the app as its own env",
	"file":                  "it reads a file of the agent; put the content in a Vault secret and use secret or ref",
	"plugin":                "it runs a command; use a template function (pkcs12 replaces `openssl pkcs12 -export`), or let the app transform the file",
	"writeToFile":           "it writes files; give each file its own template (ramvault.io/template-<name>)",
	"executeTemplate":       "it names a template at render time; use {{ template \"name\" . }}",
	"sockaddr":              "it reads the agent's network interfaces",
	"secrets":               "it lists a Vault path, so the set of secrets would only be known at render time; name each secret with secret \"<path>\"",
	"scratch":               "not provided; use variables ({{ $x := … }})",
	"mergeMap":              "not provided",
	"mergeMapWithOverride":  "not provided",
	"toTOML":                "not provided (it needs a TOML library in every agent); use toJSON or toYAML",
	"minimum":               "not provided; use if/lt",
	"maximum":               "not provided; use if/gt",
	"spew_dump":             "debug output is not provided; use toJSONPretty",
	"spew_printf":           "debug output is not provided; use printf",
	"spew_sdump":            "debug output is not provided; use toJSONPretty",
	"spew_sprintf":          "debug output is not provided; use printf",
	"datacenters":           "a Consul function; ramvault reads Vault only",
	"exportedServices":      "a Consul function; ramvault reads Vault only",
	"key":                   "a Consul function; ramvault reads Vault only",
	"keyExists":             "a Consul function; ramvault reads Vault only",
	"keyOrDefault":          "a Consul function; ramvault reads Vault only",
	"ls":                    "a Consul function; ramvault reads Vault only",
	"safeLs":                "a Consul function; ramvault reads Vault only",
	"node":                  "a Consul function; ramvault reads Vault only",
	"nodes":                 "a Consul function; ramvault reads Vault only",
	"partitions":            "a Consul function; ramvault reads Vault only",
	"peerings":              "a Consul function; ramvault reads Vault only",
	"service":               "a Consul function; ramvault reads Vault only",
	"services":              "a Consul function; ramvault reads Vault only",
	"connect":               "a Consul function; ramvault reads Vault only",
	"tree":                  "a Consul function; ramvault reads Vault only",
	"safeTree":              "a Consul function; ramvault reads Vault only",
	"caRoots":               "a Consul function; ramvault reads Vault only",
	"caLeaf":                "a Consul function; ramvault reads Vault only",
	"byKey":                 "a Consul function; ramvault reads Vault only",
	"byTag":                 "a Consul function; ramvault reads Vault only",
	"byPort":                "a Consul function; ramvault reads Vault only",
	"byMeta":                "a Consul function; ramvault reads Vault only",
	"explode":               "a Consul function; ramvault reads Vault only (explodeMap works on a map)",
	"nomadServices":         "a Nomad function; ramvault reads Vault only",
	"nomadService":          "a Nomad function; ramvault reads Vault only",
	"nomadVarList":          "a Nomad function; ramvault reads Vault only",
	"nomadVarListSafe":      "a Nomad function; ramvault reads Vault only",
	"nomadVar":              "a Nomad function; ramvault reads Vault only",
	"nomadVarExists":        "a Nomad function; ramvault reads Vault only",
	"toUnescapedYAML":       "not provided; use toYAML",
	"base64DecodeToBytes":   "not provided; use base64Decode",
	"writeToFileWithPerms":  "it writes files; give each file its own template (ramvault.io/template-<name>)",
	"executeTemplateString": "it names a template at render time; use {{ template \"name\" . }}",
}

func refused(name string) (string, bool) {
	if why, ok := refusedFuncs[name]; ok {
		return why, true
	}
	if strings.HasPrefix(name, "sprig_") {
		return "sprig is not linked into the agent (binary size); the functions of docs/templates.md cover what real templates use", true
	}
	if name == tickFunc {
		return "", false
	}
	return "", false
}

func known(name string) bool {
	if name == tickFunc {
		return false
	}
	for _, b := range builtins {
		if b == name {
			return true
		}
	}
	for _, f := range functions() {
		if f.Name == name {
			return true
		}
	}
	return false
}

// knownNames is every function a template may call, for did-you-mean.
func knownNames() []string {
	names := append([]string(nil), builtins...)
	for _, f := range functions() {
		names = append(names, f.Name)
	}
	return names
}

// didYouMean names the closest known function, or the refused one it is.
func didYouMean(name string) string {
	best, bestD := "", 1<<30
	for _, k := range knownNames() {
		if strings.EqualFold(k, name) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if d := didyoumean.Distance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= max(2, len(name)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ": see docs/templates.md for the functions"
}

func pure(f any) func(*run) any { return func(*run) any { return f } }

// --- Vault ---------------------------------------------------------------

func (r *run) secret(args ...string) (any, error) {
	d, err := newDependency(KindSecret, args)
	if err != nil {
		return nil, safef("%s", err) // only template source; Parse already refused it
	}
	s, err := r.in.Lookup.Secret(d)
	if err != nil {
		return nil, &safeError{msg: fmt.Sprintf("secret %q: not available", d.Path), err: err}
	}
	if s == nil {
		return nil, nil
	}
	r.seen = append(r.seen, s)
	return s, nil
}

func (r *run) ref(name string) (*Secret, error) {
	s, err := r.in.Lookup.Ref(name)
	if err != nil {
		return nil, &safeError{msg: fmt.Sprintf("ref %q: not available", name), err: err}
	}
	if s != nil {
		r.seen = append(r.seen, s)
	}
	return s, nil
}

func (r *run) timestamp(s ...string) (string, error) {
	now := r.in.Now().UTC()
	switch len(s) {
	case 0:
		return now.Format(time.RFC3339), nil
	case 1:
		if s[0] == "unix" {
			return strconv.FormatInt(now.Unix(), 10), nil
		}
		if len(s[0]) > 256 {
			return "", safef("timestamp: the layout is longer than 256 bytes")
		}
		return now.Format(s[0]), nil
	}
	return "", safef("timestamp: wrong number of arguments, expected 0 or 1, but got %d", len(s))
}

// --- encoding ------------------------------------------------------------

func base64Decode(s string) (string, error) {
	v, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", safef("base64Decode: not valid base64 (%s)", corruptAt(err))
	}
	return string(v), nil
}

func base64Encode(s string) (string, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil }

func base64URLDecode(s string) (string, error) {
	v, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		return "", safef("base64URLDecode: not valid URL-safe base64 (%s)", corruptAt(err))
	}
	return string(v), nil
}

func base64URLEncode(s string) (string, error) {
	return base64.URLEncoding.EncodeToString([]byte(s)), nil
}

func corruptAt(err error) string {
	var c base64.CorruptInputError
	if ok := asCorrupt(err, &c); ok {
		return fmt.Sprintf("bad byte at offset %d", int64(c))
	}
	return "bad input"
}

func asCorrupt(err error, c *base64.CorruptInputError) bool {
	v, ok := err.(base64.CorruptInputError)
	*c = v
	return ok
}

// The JSON functions match consul-template's, whose error texts quote the
// offending value type only; the json package's own errors can quote a
// character of the data, so only their kind is kept.
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", safef("toJSON: %s", jsonErr(err))
	}
	return string(bytes.TrimSpace(b)), nil
}

func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", safef("toJSONPretty: %s", jsonErr(err))
	}
	return string(bytes.TrimSpace(b)), nil
}

func toUnescapedJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", safef("toUnescapedJSON: %s", jsonErr(err))
	}
	return strings.TrimRight(b.String(), "\r\n"), nil
}

func toUnescapedJSONPretty(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", safef("toUnescapedJSONPretty: %s", jsonErr(err))
	}
	return strings.TrimRight(b.String(), "\r\n"), nil
}

func jsonErr(err error) string {
	var ute *json.UnsupportedTypeError
	var syn *json.SyntaxError
	var ut *json.UnmarshalTypeError
	switch {
	case asErr(err, &ute):
		return "unsupported type " + ute.Type.String()
	case asErr(err, &syn):
		return fmt.Sprintf("not valid JSON (at byte offset %d)", syn.Offset)
	case asErr(err, &ut):
		return "a value of the wrong type"
	}
	return "the value cannot be encoded (unsupported value)"
}

func asErr[T error](err error, target *T) bool {
	for err != nil {
		if t, ok := err.(T); ok {
			*target = t
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func toYAML(v any) (out string, err error) {
	defer func() {
		if p := recover(); p != nil { // yaml.v2 panics on some types
			out, err = "", safef("toYAML: the value cannot be encoded as YAML")
		}
	}()
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", safef("toYAML: the value cannot be encoded as YAML")
	}
	return string(bytes.TrimSpace(b)), nil
}

func parseJSON(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, safef("parseJSON: %s", jsonErr(err))
	}
	return v, nil
}

func parseYAML(s string) (v any, err error) {
	if s == "" {
		return map[string]any{}, nil
	}
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, safef("parseYAML: not valid YAML")
		}
	}()
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		// yaml.v2's messages quote the document ("cannot unmarshal !!str `…`").
		return nil, safef("parseYAML: not valid YAML")
	}
	return v, nil
}

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, safef("parseBool: not a boolean")
	}
	return b, nil
}

func parseFloat(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, safef("parseFloat: not a number")
	}
	return f, nil
}

func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, safef("parseInt: not a base-10 integer (or out of range)")
	}
	return i, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	i, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, safef("parseUint: not a base-10 unsigned integer (or out of range)")
	}
	return i, nil
}

// --- strings -------------------------------------------------------------

func contains(v, l any) (bool, error) { return in(l, v) }

// in follows consul-template: a list holds v when an element of the same
// kind (ints with ints, floats with floats, strings of the same type)
// equals it; a string holds v when v is a string of the same type inside it.
func in(l, v any) (bool, error) {
	lv, vv := reflect.ValueOf(l), reflect.ValueOf(v)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		for i := 0; i < lv.Len(); i++ {
			e := lv.Index(i)
			if e.Kind() == reflect.Interface {
				e = e.Elem()
			}
			switch e.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				switch vv.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					if vv.Int() == e.Int() {
						return true, nil
					}
				}
			case reflect.Float32, reflect.Float64:
				switch vv.Kind() {
				case reflect.Float32, reflect.Float64:
					if vv.Float() == e.Float() {
						return true, nil
					}
				}
			case reflect.String:
				if vv.IsValid() && vv.Type() == e.Type() && vv.String() == e.String() {
					return true, nil
				}
			}
		}
	case reflect.String:
		if vv.IsValid() && vv.Type() == lv.Type() && strings.Contains(lv.String(), vv.String()) {
			return true, nil
		}
	}
	return false, nil
}

func containsSome(retTrue, invert bool) func([]any, any) (bool, error) {
	return func(v []any, l any) (bool, error) {
		for _, x := range v {
			if ok, _ := in(l, x); ok != invert {
				return !retTrue, nil
			}
		}
		return retTrue, nil
	}
}

func split(sep, s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, sep), nil
}

func splitToMap(sep1, sep2, s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	for _, p := range strings.Split(s, sep1) {
		if k, v, ok := strings.Cut(p, sep2); ok {
			m[k] = v
		}
	}
	return m, nil
}

func join(sep string, a []string) (string, error) { return strings.Join(a, sep), nil }

func replaceAll(old, new, s string) (string, error) { return strings.ReplaceAll(s, old, new), nil }

// regexReplaceAll is regexp's ReplaceAllString, built match by match so that
// a replacement that grows the string is paid for as it grows.
func (r *run) regexReplaceAll(re, repl, s string) (string, error) {
	c, err := regexp.Compile(re)
	if err != nil {
		return "", safef("regexReplaceAll: the expression does not compile") // the pattern can come from data
	}
	var out []byte
	last := 0
	for _, m := range c.FindAllStringSubmatchIndex(s, -1) {
		before := len(out)
		out = append(out, s[last:m[0]]...)
		out = c.ExpandString(out, repl, s, m)
		last = m[1]
		if err := r.charge(int64(len(out) - before)); err != nil {
			return "", err
		}
		if int64(len(out)) > r.lim.Output {
			return "", &safeError{msg: "the result would exceed the output limit (" + itoa(r.lim.Output) + " bytes)", err: ErrOutputLimit}
		}
	}
	if err := r.charge(int64(len(s) - last)); err != nil {
		return "", err
	}
	out = append(out, s[last:]...)
	if len(out) == 0 {
		return s[:0], nil
	}
	return string(out), nil
}

func regexMatch(re, s string) (bool, error) {
	c, err := regexp.Compile(re)
	if err != nil {
		return false, safef("regexMatch: the expression does not compile")
	}
	return c.MatchString(s), nil
}

// trim is consul-template's `trim CUTSET S` with two arguments and ramvault's
// older one-argument `trim S` (TrimSpace): the names clash, the arities don't.
func trim(args ...string) (string, error) {
	switch len(args) {
	case 1:
		return strings.TrimSpace(args[0]), nil
	case 2:
		return strings.Trim(args[1], args[0]), nil
	}
	return "", safef("trim takes CUTSET and S (or only S, to strip spaces); got %d arguments", len(args))
}

func trimPrefix(p, s string) (string, error) { return strings.TrimPrefix(s, p), nil }
func trimSuffix(p, s string) (string, error) { return strings.TrimSuffix(s, p), nil }
func trimSpace(s string) (string, error)     { return strings.TrimSpace(s), nil }
func toLower(s string) (string, error)       { return strings.ToLower(s), nil }
func toUpper(s string) (string, error)       { return strings.ToUpper(s), nil }
func toTitle(s string) (string, error)       { return title(s), nil }

func indent(spaces int, s string) (string, error) {
	if spaces < 0 {
		return "", safef("indent value must be a positive integer")
	}
	prefix := strings.Repeat(" ", spaces)
	var b strings.Builder
	sp := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if sp && c != '\n' {
			b.WriteString(prefix)
		}
		b.WriteByte(c)
		sp = c == '\n'
	}
	return b.String(), nil
}

func sha256Hex(s string) (string, error) {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:]), nil
}

func md5sum(s string) (string, error) { return fmt.Sprintf("%x", md5.Sum([]byte(s))), nil }

func hmacSHA256Hex(message, key string) (string, error) {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(message))
	return hex.EncodeToString(h.Sum(nil)), nil
}

func explodeMap(in map[string]any) (map[string]any, error) {
	out := map[string]any{}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := explode(out, k, in[k]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func explode(m map[string]any, k string, v any) error {
	if top, rest, ok := strings.Cut(k, "/"); ok {
		if _, ok := m[top]; !ok {
			m[top] = map[string]any{}
		}
		nest, ok := m[top].(map[string]any)
		if !ok {
			return safef("explodeMap: a key is both a value and a prefix of other keys")
		}
		return explode(nest, rest, v)
	}
	if k != "" {
		m[k] = v
	}
	return nil
}

// loop yields lazily (consul-template feeds a channel from a goroutine, which
// a failed render would leak); each pass through the range body is a step.
func loop(args ...any) (iter.Seq[int64], error) {
	to64 := func(v any) (int64, error) {
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int(), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int64(rv.Uint()), nil
		case reflect.String:
			return parseInt(rv.String())
		}
		return 0, safef("loop: bad argument type: %T", v)
	}
	var a, b any
	switch len(args) {
	case 1:
		a, b = 0, args[0]
	case 2:
		a, b = args[0], args[1]
	default:
		return nil, safef("loop: wrong number of arguments, expected 1 or 2, but got %d", len(args))
	}
	start, err := to64(a)
	if err != nil {
		return nil, err
	}
	stop, err := to64(b)
	if err != nil {
		return nil, err
	}
	return func(yield func(int64) bool) {
		for i := start; i < stop; i++ {
			if !yield(i) {
				return
			}
		}
	}, nil
}

// arith follows consul-template: floats win, then int64 unless both are
// unsigned. json.Number and other strings are errors, as there.
func arith(name string, op byte) func(b, a any) (any, error) {
	return func(b, a any) (any, error) {
		av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
		ka, kb := numKind(av), numKind(bv)
		if ka == 0 {
			return nil, safef("%s: unknown type %T", name, a)
		}
		if kb == 0 {
			return nil, safef("%s: unknown type %T", name, b)
		}
		if ka == 'f' || kb == 'f' {
			if op == '%' {
				if ka == 'f' {
					return nil, safef("%s: unknown type %T", name, a)
				}
				return nil, safef("%s: unknown type %T", name, b)
			}
			x, y := toF(av), toF(bv)
			switch op {
			case '+':
				return x + y, nil
			case '-':
				return x - y, nil
			case '*':
				return x * y, nil
			default:
				return x / y, nil
			}
		}
		if ka == 'u' && kb == 'u' {
			x, y := av.Uint(), bv.Uint()
			if (op == '/' || op == '%') && y == 0 {
				return nil, safef("%s: division by zero", name)
			}
			switch op {
			case '+':
				return x + y, nil
			case '-':
				return x - y, nil
			case '*':
				return x * y, nil
			case '/':
				return x / y, nil
			default:
				return x % y, nil
			}
		}
		x, y := toI(av), toI(bv)
		if (op == '/' || op == '%') && y == 0 {
			return nil, safef("%s: division by zero", name)
		}
		switch op {
		case '+':
			return x + y, nil
		case '-':
			return x - y, nil
		case '*':
			return x * y, nil
		case '/':
			return x / y, nil
		default:
			return x % y, nil
		}
	}
}

func numKind(v reflect.Value) byte {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return 'i'
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return 'u'
	case reflect.Float32, reflect.Float64:
		return 'f'
	}
	return 0
}

func toF(v reflect.Value) float64 {
	switch numKind(v) {
	case 'i':
		return float64(v.Int())
	case 'u':
		return float64(v.Uint())
	}
	return v.Float()
}

func toI(v reflect.Value) int64 {
	if numKind(v) == 'u' {
		return int64(v.Uint())
	}
	return v.Int()
}

func defaultFunc(def string, v any) string {
	if s, ok := v.(string); ok {
		if s != "" {
			return s
		}
		return def
	}
	if v != nil {
		return fmt.Sprint(v)
	}
	return def
}

func pemField(d map[string]any, key string) (string, error) {
	s, _ := d[key].(string)
	if s == "" {
		return "", safef("no %q in the secret (is it a PKI issue response?)", key)
	}
	return strings.TrimRight(s, "\n") + "\n", nil
}

func pemChain(d map[string]any) (string, error) {
	out, err := pemField(d, "certificate")
	if err != nil {
		return "", err
	}
	if chain, ok := d["ca_chain"].([]any); ok && len(chain) > 0 {
		for _, c := range chain {
			if s, ok := c.(string); ok && s != "" {
				out += strings.TrimRight(s, "\n") + "\n"
			}
		}
		return out, nil
	}
	if ca, ok := d["issuing_ca"].(string); ok && ca != "" {
		out += strings.TrimRight(ca, "\n") + "\n"
	}
	return out, nil
}
