#!/usr/bin/env bash
# What a job holding AWS credentials runs `pulumi preview`/`up` and the policy pack from
# (.github/actions/pulumi-setup): .venv with exactly the packages of requirements/deploy.lock,
# each checked against the hashes recorded there (pip --require-hashes: a package changed on the
# index, or one the lock does not name, fails the install), wheels only so no unhashed build
# tool runs; then this repository itself, editable, with no dependency and no download (its build
# backend, setuptools, comes from the lock). The lock is refreshed by bash scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-}
if [ -z "$python" ]; then
  bash scripts/apt-install.sh python3 python3-venv
  python=/usr/bin/python3
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/pip install -q --disable-pip-version-check)
echo "setup: pip installs the $(grep -c '==' requirements/deploy.lock) packages of requirements/deploy.lock (hash-checked), then this repository"
"${pip[@]}" --require-hashes --only-binary :all: -r requirements/deploy.lock
"${pip[@]}" --no-deps --no-build-isolation --no-index -e .
