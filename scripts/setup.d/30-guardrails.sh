#!/usr/bin/env bash
# Guardrails (docs/guardrails.md): the policy pack's SDK, pinned lint and type checkers,
# actionlint for the workflows and shellcheck for the shell scripts (actionlint also runs it on
# every workflow `run:` script). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

# jq and git: the workflow tests run the stack-listing step and lint copies of .github/ as git projects
bash scripts/apt-install.sh shellcheck jq git
.venv/bin/pip install -q --disable-pip-version-check -r requirements-lint.txt -r policy/requirements.txt
