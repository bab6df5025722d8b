#!/usr/bin/env bash
# Installs what one command needs on a fresh Debian 12 machine, and no more (idempotent; as root
# when Debian packages are missing):
#   bash scripts/setup.sh venv         .venv with the program (scripts/render.sh, python -m ops)
#   bash scripts/setup.sh deploy       .venv with the program and the policy pack's SDK from the
#                                      hash lock requirements/deploy.lock (CI's preview and up jobs)
#   bash scripts/setup.sh unit         + pytest, moto and the sample project's packages: no apt, no root
#   bash scripts/setup.sh e2e          + the Debian parts the end-to-end tests run (redis, cloud-init...)
#   bash scripts/setup.sh guardrails   + the policy pack's SDK, linters and type checkers
#   bash scripts/setup.sh vm           + qemu and the tools that build the VM image
#   bash scripts/setup.sh [all]        every lane (bash scripts/test.sh, which CI runs)
# Each lane's step is scripts/setup.d/NN-<lane>.sh; 10-venv.sh installs the Python side.
set -euo pipefail
cd "$(dirname "$0")/.."

lane=${1:-all}
case $lane in
  venv) bash scripts/setup.d/10-venv.sh ;;
  unit) bash scripts/setup.d/10-venv.sh test ;;
  e2e | guardrails | vm | deploy) bash scripts/setup.d/*-"$lane".sh ;;
  all)
    # Every extra at once: one pip run on a fresh machine; the steps' own venv calls are then no-ops.
    bash scripts/setup.d/10-venv.sh test lint policy
    steps=(scripts/setup.d/*-e2e.sh scripts/setup.d/*-guardrails.sh scripts/setup.d/*-vm.sh)
    for i in "${!steps[@]}"; do
      echo "setup: step $((i + 1)) of ${#steps[@]}: ${steps[i]}"
      bash "${steps[i]}"
    done
    ;;
  *)
    echo "setup.sh: unknown lane '$lane'; allowed: venv, deploy, unit, e2e, guardrails, vm, all" >&2
    exit 2
    ;;
esac
