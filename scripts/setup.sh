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
bash scripts/apt-install.sh "${apt_packages[@]}"

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-test.txt

for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  echo "setup: $step"
  bash "$step"
done
