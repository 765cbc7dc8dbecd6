#!/usr/bin/env bash
# Builds the real components of the test stack into bin/ (git-ignored), each only when
# it is missing or when what pins it changed (tools go.mod/go.sum, its main.go, its
# build flags; for Vault also test/tools/vault/trim). Usage: test/tools/build.sh [name...]
# (default: all). RAMVAULT_BIN builds into another directory (as the stack reads it).
#
# On a fresh machine most of the time is compiling: the stale etcd and Kubernetes
# binaries are built by one `go build` (their packages compile once, both cores stay
# busy), while the modules of Vault and of the other tools are downloaded beside it.
# Vault is built trimmed to what the stack uses (test/tools/vault/trim/overlay.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${RAMVAULT_BIN:-$root/bin}
tools=$root/test/tools
mkdir -p "$bin"

K8S=v1.34.4
ldk8s="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldk8s="$ldk8s -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=34 -X $p.gitTreeState=clean"
done
trim=$tools/vault/trim
vaultflags="-tags minimal -modfile $bin/.vault-trim/go.mod -overlay $bin/.vault-trim/overlay.json"

# name:module-dir:version
all="etcd:.:etcd-v3.6.4 kube-apiserver:.:$K8S kube-controller-manager:.:$K8S kube-scheduler:.:$K8S kubelet:.:$K8S kubectl:.:$K8S vault:vault:v1.21.0"
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl vault)

stamp() { # name dir version: what pins the binary
  local mod=$tools/$2 pins=("$tools/$2/go.mod" "$tools/$2/go.sum" "$tools/$2/cmd/$1/main.go")
  [ "$1" != vault ] || pins+=("$trim"/*)
  echo "$3 $( { cat "${pins[@]}"; echo "$ldk8s $vaultflags"; } | sha256sum | cut -c1-16)"
}

stale_k8s=() vault_stale=
for w in "${want[@]}"; do
  row=$(tr ' ' '\n' <<<"$all" | grep "^$w:") || { echo "tools: unknown tool $w" >&2; exit 2; }
  IFS=: read -r name dir version <<<"$row"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$(stamp "$name" "$dir" "$version")" ]; then
    continue
  fi
  if [ "$name" = vault ]; then vault_stale=1; else stale_k8s+=("$name"); fi
done

fetch=
if [ ${#stale_k8s[@]} -gt 0 ]; then
  # While Kubernetes compiles, the modules of the tools built next download (only
  # the packages each build loads: `go list -deps`): Vault's here, and those of
  # build-helm.sh, build-vaultk8s.sh and build-prometheus.sh if their binary is missing.
  # shellcheck disable=SC2086
  {
    [ -z "$vault_stale" ] || { "$trim/overlay.sh" "$bin/.vault-trim" && (cd "$tools/vault" && go list -deps $vaultflags ./cmd/vault >/dev/null); }
    [ -x "$bin/helm" ] || (cd "$tools/helm" && go list -deps helm.sh/helm/v3/cmd/helm >/dev/null)
    [ -x "$bin/vault-k8s" ] || (cd "$tools/vaultk8s" && go list -deps ./cmd/vault-k8s >/dev/null)
    [ -x "$bin/prometheus" ] || (cd "$tools/prometheus" && go list -deps -tags remove_all_sd,enable_kubernetes_sd \
      github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool >/dev/null)
  } 2>/dev/null & fetch=$!
fi

if [ ${#stale_k8s[@]} -gt 0 ]; then
  echo "tools: building ${stale_k8s[*]} (first build takes minutes)..."
  start=$(date +%s)
  rm -rf "$bin/.k8s.tmp"
  (cd "$tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldk8s" -o "$bin/.k8s.tmp/" "${stale_k8s[@]/#/./cmd/}")
  for name in "${stale_k8s[@]}"; do
    row=$(tr ' ' '\n' <<<"$all" | grep "^$name:"); IFS=: read -r name dir version <<<"$row"
    mv "$bin/.k8s.tmp/$name" "$bin/$name"
    stamp "$name" "$dir" "$version" > "$bin/.$name.stamp"
  done
  rmdir "$bin/.k8s.tmp"
  echo "time: tools ${stale_k8s[*]} $(( $(date +%s) - start ))s"
fi
# (a failed prefetch is not an error: each build downloads what it lacks and says why)
[ -z "$fetch" ] || wait "$fetch" || true

if [ -n "$vault_stale" ]; then
  echo "tools: building vault v1.21.0, trimmed (test/tools/vault/trim; first build takes minutes)..."
  start=$(date +%s)
  "$trim/overlay.sh" "$bin/.vault-trim"
  # shellcheck disable=SC2086
  (cd "$tools/vault" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" $vaultflags -o "$bin/vault.tmp" ./cmd/vault)
  mv "$bin/vault.tmp" "$bin/vault"
  stamp vault vault v1.21.0 > "$bin/.vault.stamp"
  echo "time: tools vault $(( $(date +%s) - start ))s"
fi
