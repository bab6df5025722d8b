#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 machine (run as root, idempotent):
# Debian packages first, then a virtualenv at .venv with the Python requirements, then each
# feature's own setup step in scripts/setup.d/ (sorted by name).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  python3-venv
  # what the instances run the machine scripts with (Debian 12's own python3 and boto3)
  python3-boto3
  # the real parts the tests start
  redis-server redis-tools openssl
  # cloud-init's own schema validator; systemd-analyze comes with systemd
  cloud-init systemd
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  # policy-rc.d keeps package scripts from starting daemons (redis, cloud-init) on this host:
  # the tests start their own, on loopback, with their own configuration.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt

for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $step"
  bash "$step"
done
