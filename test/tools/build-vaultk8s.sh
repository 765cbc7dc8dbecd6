#!/usr/bin/env bash
# Builds hashicorp/vault-k8s's webhook (the peer of `make bench-webhook`, and the
# reference of the e2e differential test, test/e2e/vaultk8s_test.go) into
# bin/vault-k8s, only when it is missing or when what pins it (the module's
# go.mod/go.sum, its main.go, this script) changed. Same stamps as build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
mod=$root/test/tools/vaultk8s
name=vault-k8s
version=v1.6.2
mkdir -p "$bin"
stamp="$version $(cat "$mod/go.mod" "$mod/go.sum" "$mod/cmd/$name/main.go" "$0" | sha256sum | cut -c1-16)"
if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "tools: building $name $version (first build takes minutes)..."
start=$(date +%s)
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" "./cmd/$name")
mv "$bin/$name.tmp" "$bin/$name"
echo "$stamp" > "$bin/.$name.stamp"
echo "tools: built $name in $(( $(date +%s) - start ))s"
