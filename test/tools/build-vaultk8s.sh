#!/usr/bin/env bash
# Builds hashicorp/vault-k8s v1.6.2 (v1.7.x is not served by the Go module
# proxy: 403) from the module pinned in test/tools/vaultk8s into bin/:
#   - bin/vault-k8s: its webhook handler alone, over HTTPS from files (the peer
#     of `make bench-webhook`, the reference of the e2e differential test,
#     test/e2e/vaultk8s_test.go);
#   - bin/vault-k8s-injector: the module's own command (`vault-k8s
#     agent-inject`, a `tool` of the module), which `make bench-scale` runs in
#     the stack as image localhost/vault-k8s:1.6.2.
# Each only when missing or when what pins it (the module's go.mod/go.sum, its
# main.go, this script) changed. Same stamps as build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
mod=$root/test/tools/vaultk8s
version=v1.6.2
mkdir -p "$bin"
stamp="$version $(cat "$mod/go.mod" "$mod/go.sum" "$mod/cmd/vault-k8s/main.go" "$0" | sha256sum | cut -c1-16)"
build() { # name package
  local name=$1 pkg=$2
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "tools: building $name $version (first build takes minutes)..."
  local start; start=$(date +%s)
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
  echo "tools: built $name in $(( $(date +%s) - start ))s"
}
build vault-k8s ./cmd/vault-k8s
build vault-k8s-injector github.com/hashicorp/vault-k8s
