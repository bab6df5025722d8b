#!/usr/bin/env bash
# Guardrails lane (tests/guardrails, scripts/lint.sh): the policy pack's SDK, the pinned linters
# and type checkers (pyproject.toml's `lint` extra, actionlint among them) and shellcheck for the
# shell scripts (actionlint also runs it on every workflow `run:` script). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
# jq and git: the workflow tests run the stack-listing step and lint copies of .github/ as git projects
bash scripts/apt-install.sh shellcheck jq git
bash scripts/setup.d/10-venv.sh test lint policy
