#!/usr/bin/env bash
# VM lane (tests/vm, docs/vm.md): the tools that build the guest image and boot it, and
# python3-venv for scripts/build-release.sh (the release's wheels are built by Debian's python3).
# gpg (with its agent) signs the stand-in agent packages with a throwaway key per image.
# The image itself is built (or taken from the machine-wide cache) by the test session:
# scripts/vm/image.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh qemu-system-x86 qemu-utils debootstrap e2fsprogs cloud-image-utils genisoimage python3-venv gpg gpg-agent
bash scripts/setup.d/10-venv.sh test
