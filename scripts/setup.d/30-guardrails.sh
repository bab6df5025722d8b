#!/usr/bin/env bash
# Guardrails (docs/guardrails.md): the policy pack's SDK, pinned lint and type checkers,
# actionlint for the workflows and shellcheck for the shell scripts. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v shellcheck >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends shellcheck
fi

.venv/bin/pip install -q --disable-pip-version-check -r requirements-lint.txt -r policy/requirements.txt
