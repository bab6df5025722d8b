#!/usr/bin/env bash
# Guardrails (docs/guardrails.md): the policy pack's SDK, pinned lint and type checkers,
# actionlint for the workflows and shellcheck for the shell scripts (actionlint also runs it on
# every workflow `run:` script). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/apt-install.sh shellcheck
.venv/bin/pip install -q --disable-pip-version-check -r requirements-lint.txt -r policy/requirements.txt
