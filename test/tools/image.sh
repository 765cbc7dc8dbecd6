#!/usr/bin/env bash
# Builds the Dockerfile's final images (agent, ramvault, example-app),
# tagged VERSION and dev.
# Here (no Docker engine): test/cmd/image-build cross-compiles the binaries
# for linux/amd64 and linux/arm64 on the host and assembles each final stage
# with buildah: bin/images/<name>.tar (one OCI index per image, both
# platforms) and bin/images/<name>.sbom.json, for the local stack to import.
# IMAGES_DIR writes them elsewhere. Nothing is rebuilt when no input changed.
# With a Docker engine: docker build of the local platform (see the
# Dockerfile's header for buildx and both platforms).
#   test/tools/image.sh [VERSION]   (default: the VERSION file)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
version=${1:-$(cat VERSION)}
revision=$(git rev-parse HEAD)
targets="agent:ramvault-agent ramvault:ramvault example-app:ramvault-example-app"

if docker info >/dev/null 2>&1; then
  for t in $targets; do
    docker build --target "${t%%:*}" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
      -t "localhost/${t#*:}:$version" -t "localhost/${t#*:}:dev" .
  done
  exit 0
fi

command -v buildah >/dev/null || { echo "image: neither a Docker engine nor buildah; run make deps" >&2; exit 1; }
exec go run ./test/cmd/image-build -root "$root" -version "$version" -revision "$revision"
