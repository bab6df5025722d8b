#!/usr/bin/env bash
# Regenerates the hash locks with pip-tools' pip-compile --generate-hashes (pyproject.toml's
# `lock` extra), from what they lock:
#   requirements/deploy.lock      pyproject.toml's dependencies + the `policy` extra + its build
#                                 backend: CI's preview and up jobs (scripts/setup.d/15-deploy.sh)
#   sample_app/requirements.lock  sample_app/requirements.txt: the release's wheels
#                                 (scripts/build-release.sh)
# Resolved by .venv's interpreter, Debian 12's python3 (10-venv.sh), the one the instances run,
# so markers such as redis's `python_full_version < "3.11.3"` are decided for it. --upgrade
# (passed through) moves every pin to the newest allowed release; without it, pins stay unless
# an input no longer allows them. Commit the changed locks with the change that needed them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.d/10-venv.sh lock
compile=(.venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras
  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host "$@")
"${compile[@]}" --extra policy --all-build-deps --output-file requirements/deploy.lock pyproject.toml
"${compile[@]}" --output-file sample_app/requirements.lock sample_app/requirements.txt
