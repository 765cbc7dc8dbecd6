#!/usr/bin/env bash
# Installs the Debian packages the local stack and image builds need, only
# those missing. Quiet when everything is present.
set -euo pipefail
pkgs="containerd runc containernetworking-plugins postgresql busybox-static iproute2 iptables util-linux buildah openssl ca-certificates"
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
