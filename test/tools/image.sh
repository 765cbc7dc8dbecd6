#!/usr/bin/env bash
# Builds the Dockerfile's targets. Here (no Docker engine, no registry) with
# buildah and a builder image assembled from this machine's Go toolchain;
# with Docker where a Docker engine answers. Each image is exported as an OCI
# archive under bin/images/ for the local stack to import.
#   test/tools/image.sh [TAG [VERSION]]   (default tag dev; VERSION is stamped into the binaries)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tag=${1:-dev}
version=${2:-$tag}
out=$root/bin/images
mkdir -p "$out"
targets="agent:ramvault-agent ramvault:ramvault example-app:ramvault-example-app"

if docker info >/dev/null 2>&1; then
  for t in $targets; do
    docker build --target "${t%%:*}" --build-arg VERSION="$version" -t "localhost/${t#*:}:$tag" .
  done
  exit 0
fi

command -v buildah >/dev/null || { echo "image: neither a Docker engine nor buildah; run make deps" >&2; exit 1; }
S="--storage-driver vfs"
goversion=$(go env GOVERSION)
builder=localhost/go-builder:${goversion#go}
if ! buildah $S inspect --type image "$builder" >/dev/null 2>&1; then
  echo "image: assembling builder $builder from $(go env GOROOT) (once)"
  c=$(buildah $S from scratch)
  m=$(buildah $S mount "$c")
  mkdir -p "$m/bin" "$m/usr/local" "$m/tmp" "$m/etc/ssl/certs"
  chmod 1777 "$m/tmp"
  cp /bin/busybox "$m/bin/busybox"
  for a in sh mkdir cp ls cat rm mv ln; do ln -sf busybox "$m/bin/$a"; done
  cp -a "$(go env GOROOT)" "$m/usr/local/go"
  cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/"
  buildah $S umount "$c" >/dev/null
  buildah $S config --env PATH=/usr/local/go/bin:/bin --env HOME=/tmp "$c"
  buildah $S commit -q "$c" "$builder" >/dev/null
  buildah $S rm "$c" >/dev/null
fi
# What the images are made of: the files the Dockerfile copies, the
# Dockerfile, the version stamped in, the tag and the toolchain. An archive
# whose inputs have not changed is not built again (buildah on vfs copies the
# builder's layers at each step: minutes even when every layer is cached).
inputs=$( { echo "$tag $version $goversion"; find Dockerfile go.mod go.sum cmd pkg injector sidecar examples -type f -print0 \
  | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
for t in $targets; do
  target=${t%%:*} name=localhost/${t#*:}:$tag
  stamp=$out/.${t#*:}.inputs
  if [ -s "$out/${t#*:}.tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    echo "image: $name is up to date"
    continue
  fi
  echo "image: building $name (target $target)"
  buildah $S bud -q --layers --target "$target" --build-arg BUILDER="$builder" --build-arg VERSION="$version" \
    --build-arg GOPROXY="$(go env GOPROXY)" -t "$name" . >/dev/null
  rm -f "$out/${t#*:}.tar"
  buildah $S push -q "$name" "oci-archive:$out/${t#*:}.tar:$name" >/dev/null
  echo "$inputs" > "$stamp"
done
# buildah on vfs keeps every layer of every build as a full copy of the
# builder (GBs each); the tagged images and the archives are all we use.
buildah $S rmi --prune >/dev/null 2>&1 || true
