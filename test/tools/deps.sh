#!/usr/bin/env bash
# Installs the Debian packages the local stack and image builds need, only
# those missing. Quiet when everything is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# Debian's nginx package, downloaded, not installed (its postinst would start
# a server on this host): test/stack/nginx.go builds a stock-image-like nginx
# from it for the e2e test of a Pod with no command.
debs=$root/bin/debs
if ! compgen -G "$debs/nginx_*.deb" >/dev/null; then
  mkdir -p "$debs"
  (cd "$debs" && apt-get download -qq nginx 2>/dev/null) || { echo "deps: apt-get download nginx failed" >&2; exit 1; }
fi
# qemu-user-static: test/images runs the arm64 agent of the image under qemu-aarch64-static.
pkgs="containerd runc containernetworking-plugins postgresql busybox-static iproute2 iptables util-linux buildah openssl ca-certificates qemu-user-static"
missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${missing[*]}; run as root (apt-get install)" >&2; exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
