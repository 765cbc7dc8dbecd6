#!/usr/bin/env bash
# Builds the real components of the test stack into bin/ (git-ignored), each only when
# it is missing or when what pins it (tools go.mod/go.sum, its main.go, this script)
# changed. Usage: test/tools/build.sh [name...]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
tools=$root/test/tools
mkdir -p "$bin"

K8S=v1.34.4
ldk8s="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldk8s="$ldk8s -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=34 -X $p.gitTreeState=clean"
done

# name:module-dir:version
all="etcd:.:etcd-v3.6.4 kube-apiserver:.:$K8S kube-controller-manager:.:$K8S kube-scheduler:.:$K8S kubelet:.:$K8S kubectl:.:$K8S vault:vault:v1.21.0"
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl vault)

for w in "${want[@]}"; do
  row=$(tr ' ' '\n' <<<"$all" | grep "^$w:") || { echo "tools: unknown tool $w" >&2; exit 2; }
  IFS=: read -r name dir version <<<"$row"
  mod=$tools/$dir
  stamp="$version $(cat "$mod/go.mod" "$mod/go.sum" "$mod/cmd/$name/main.go" "$0" | sha256sum | cut -c1-16)"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  ld="-s -w"; [ "$name" = etcd ] || [ "$name" = vault ] || ld=$ldk8s
  echo "tools: building $name $version (first build takes minutes)..."
  start=$(date +%s)
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$bin/$name.tmp" "./cmd/$name")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/.$name.stamp"
  echo "tools: built $name in $(( $(date +%s) - start ))s"
done
