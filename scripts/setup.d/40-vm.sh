#!/usr/bin/env bash
# VM tests (tests/vm, docs/vm.md): the tools that build the guest image and boot it. The image
# itself is built (or taken from the machine-wide cache) by the test session: scripts/vm/image.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh qemu-system-x86 qemu-utils debootstrap e2fsprogs cloud-image-utils genisoimage
