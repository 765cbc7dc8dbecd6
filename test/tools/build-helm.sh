#!/usr/bin/env bash
# Builds Helm (the module pinned in test/tools/helm/go.mod, a `tool` there)
# into bin/helm, only when it is missing or when what pins it (that go.mod,
# go.sum, this script) changed. Same stamps as build.sh.
#
# Helm v3's CLI is package main (helm.sh/helm/v3/cmd/helm: newRootCmd and
# every subcommand live there), so no thin main of ours can import it; the
# `tool` directive builds upstream's own main by its import path instead,
# with the -X settings of Helm's Makefile (its version; the Kubernetes
# version lint and `helm template` assume, that of its client-go: 1.34).
# Kept out of build.sh: that script's stamps hash the script itself, so a
# new row there would rebuild Kubernetes and Vault on every machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
mod=$root/test/tools/helm
name=helm
version=v3.19.5
pkg=helm.sh/helm/v3
mkdir -p "$bin"
stamp="$version $(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-16)"
if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
ld="-s -w -X $pkg/internal/version.version=$version -X $pkg/internal/version.gitTreeState=clean"
for p in pkg/lint/rules pkg/chartutil; do
  ld="$ld -X $pkg/$p.k8sVersionMajor=1 -X $pkg/$p.k8sVersionMinor=34"
done
echo "tools: building $name $version (first build takes minutes)..."
start=$(date +%s)
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin/$name.tmp" "$pkg/cmd/helm")
mv "$bin/$name.tmp" "$bin/$name"
echo "$stamp" > "$bin/.$name.stamp"
echo "tools: built $name in $(( $(date +%s) - start ))s"
