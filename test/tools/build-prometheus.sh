#!/usr/bin/env bash
# Builds Prometheus and promtool (the module pinned in
# test/tools/prometheus/go.mod, `tool`s there) into bin/, only when they are
# missing or when what pins them (that go.mod, go.sum, this script) changed.
#
# Why not Debian's `prometheus` package: Debian builds it without the
# Kubernetes service discovery ("Kubernetes support has been completely
# removed", its NEWS.Debian since 1.5.0; 2.42 in Debian 12 rejects
# kubernetes_sd_configs), and the scrape configuration in docs/operations.md
# is kubernetes_sd. The build tags keep that discovery only (upstream's
# plugins/ files), so none of the cloud SDKs is compiled.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/bin
mod=$root/test/tools/prometheus
version=3.16.0 # module v0.316.0
pkg=github.com/prometheus/prometheus
mkdir -p "$bin"
stamp="$version $(cat "$mod/go.mod" "$mod/go.sum" "$0" | sha256sum | cut -c1-16)"
if [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ] && [ "$(cat "$bin/.prometheus.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
ld="-s -w -X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=release"
echo "tools: building prometheus $version and promtool (first build takes minutes)..."
start=$(date +%s)
# one `go build` for both: their shared packages compile once, in parallel with the rest
rm -rf "$bin/.prometheus.tmp"
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "$ld" -o "$bin/.prometheus.tmp/" "$pkg/cmd/prometheus" "$pkg/cmd/promtool")
for name in prometheus promtool; do mv "$bin/.prometheus.tmp/$name" "$bin/$name"; done
rmdir "$bin/.prometheus.tmp"
echo "$stamp" > "$bin/.prometheus.stamp"
echo "tools: built prometheus and promtool in $(( $(date +%s) - start ))s"
