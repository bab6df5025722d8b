#!/usr/bin/env bash
# VM tests (tests/vm): the tools that build the guest image and boot it. The image itself is built
# (or taken from the machine-wide cache) by the test session, see scripts/vm/image.py.
set -euo pipefail
packages=(qemu-system-x86 qemu-utils debootstrap e2fsprogs cloud-image-utils genisoimage)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi
