#!/usr/bin/env bash
# End-to-end tests (tests/e2e) and benchmarks (bench/): what the instances get from Debian
# (userdata.render.PACKAGES: python3-boto3 for app-fetch-secrets, python3-venv for app-release)
# plus the tools the harness itself runs (unshare/setpriv from util-linux, redis-benchmark).
set -euo pipefail
packages=(python3-boto3 python3-venv redis-server redis-tools openssl util-linux cloud-init)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  # Keep package scripts from starting daemons on this host; the tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi
