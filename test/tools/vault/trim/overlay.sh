#!/usr/bin/env bash
# Writes what trims ramvault's test Vault to what the stack and the tests use:
# OUTDIR/overlay.json and OUTDIR/go.mod, for
#   go build -tags minimal -modfile OUTDIR/go.mod -overlay OUTDIR/overlay.json
# Usage: overlay.sh OUTDIR
#
# Vault v1.21.0 imports every builtin plugin, every cloud KMS seal, every
# raft auto-join provider, every Agent auto-auth method and the Okta SDK;
# most of its compile (22 minutes on a fresh 2-core machine, 323 MB of Go
# source) is their cloud SDKs. The build uses Vault's own `minimal` tag
# (helper/builtinplugins, command: no addon plugins; storage inmem and raft)
# and this overlay (overlay.list) adds back the two plugins the stack needs
# and stubs the packages that drag in an SDK nothing here calls: 73 MB
# of source are left. An overlay may not replace files in the module cache,
# so the modules it touches are copied to OUTDIR/mod and OUTDIR/go.mod (the
# -modfile of the build) replaces them by those copies. What stays is what
# the stack runs (`vault server -dev`: Kubernetes and JWT auth, KV v1/v2,
# PKI, database + PostgreSQL, transit, AppRole, userpass, cert) and `vault
# agent` (kubernetes, token_file, jwt, approle, cert auto-auth; templates).
# Still compiled: the cloud KMS seals' SDKs (Vault's core uses too much of
# their API, down to the Shamir seal's options, to stub them safely).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: overlay.sh OUTDIR}
rm -rf "$out" && mkdir -p "$out"
declare -A dir name files copied
pkgs=$(awk '$1=="file"||$1=="stub" {print $2}' "$here/overlay.list" | sort -u)
cp "$here/../go.mod" "$out/go.mod"
cp "$here/../go.sum" "$out/go.sum"
# -find: the packages alone, not their imports (whose modules need not be downloaded)
# shellcheck disable=SC2086
listed=$(cd "$here/.." && go list -find -tags minimal \
  -f '{{.ImportPath}}|{{.Name}}|{{.Dir}}|{{join .GoFiles " "}}|{{.Module.Path}}|{{.Module.Version}}|{{.Module.Dir}}' $pkgs)
while IFS='|' read -r p n d f mp mv md; do
  [ -n "$md" ] && [ -n "$n" ] || { echo "overlay: go list found no module directory for $p" >&2; exit 1; }
  copy=$out/mod/$mp@$mv
  if [ -z "${copied[$mp]:-}" ]; then
    mkdir -p "$(dirname "$copy")" && cp -r "$md" "$copy" && chmod -R u+w "$copy"
    echo "replace $mp => $copy" >> "$out/go.mod"
    copied[$mp]=1
  fi
  dir[$p]=$copy${d#"$md"} name[$p]=$n files[$p]=$f
done <<<"$listed"
entries=()
while read -r kind p a b c; do
  case $kind in
  file)
    [ -f "${dir[$p]}/$a" ] || { echo "overlay: $p has no $a (Vault version changed? see $here/overlay.list)" >&2; exit 1; }
    entries+=("\"${dir[$p]}/$a\": \"$here/$b\"") ;;
  stub)
    gen=$out/$(tr / _ <<<"$p").go
    sed -e "s/__PKG__/${name[$p]}/g" -e "s/__FUNC__/${b:-}/g" -e "s/__EXTRA__/${c:-}/g" "$here/$a" > "$gen"
    for f in ${files[$p]}; do entries+=("\"${dir[$p]}/$f\": \"\""); done
    entries+=("\"${dir[$p]}/zz_ramvault_stub.go\": \"$gen\"") ;;
  ''|'#'*) ;;
  *) echo "overlay: bad line in overlay.list: $kind $p" >&2; exit 1 ;;
  esac
done < "$here/overlay.list"
{
  echo '{"Replace": {'
  (IFS=$'\n'; echo "${entries[*]}") | sed '$!s/$/,/'
  echo '}}'
} > "$out/overlay.json"
