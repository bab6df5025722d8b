#!/usr/bin/env bash
# The README's test command: installs what a lane needs, then runs that lane's tests.
#   bash scripts/test.sh [unit|e2e|vm|guardrails|all] [PYTEST ARGS...]    (default: all; CI runs all)
#     unit         the program under mocks, the renderer, the ops tool against moto: no root, no apt, no VM
#     e2e          the rendered stack run on this host (root: namespaces, daemons)
#     vm           each role's user-data booted in a Debian 12 VM (qemu; minutes per boot)
#     guardrails   the policy pack, the stacks against it, lint and types, the workflows
# Every test belongs to exactly one lane (tests/conftest.py marks them by directory).
set -euo pipefail
cd "$(dirname "$0")/.."

lane=${1:-all}
(($#)) && shift
case $lane in
  # Mocks, moto and linters share nothing between tests: one process per core; a module whose
  # tests share one costly setup marks them as an xdist_group, which one process runs. e2e and vm
  # run one at a time (namespaces, daemons, VM boots each want the whole machine).
  unit | guardrails) selection=(-m "$lane" -n auto --dist loadgroup) ;;
  e2e | vm) selection=(-m "$lane") ;;
  all) selection=() ;;
  *)
    echo "test.sh: unknown lane '$lane'; allowed: unit, e2e, vm, guardrails, all" >&2
    exit 2
    ;;
esac
bash scripts/setup.sh "$lane"
# Python caches each module's bytecode, and pytest each test module with its asserts rewritten,
# in __pycache__/ beside the source (ignored by git). A shell that turns caching off
# (PYTHONDONTWRITEBYTECODE) makes every run, every xdist worker and every `python -m` a test starts
# compile the repository and rewrite the tests again: about 1.3 s of each worker's collection.
unset PYTHONDONTWRITEBYTECODE
# Every temp tree of the run (pytest's, the release builder's and pip's, the VM image build's, the
# benches') in one directory named by this shell's pid: removed when the run ends, and at the next
# run's start, with what still holds it, when this one was killed (tests/conftest.py RUN_TREES).
# 1777 as /tmp: tests run commands as other users.
TMPDIR=$(mktemp -d "/tmp/test-run-$$-XXXXXX")
chmod 1777 "$TMPDIR"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
status=0
.venv/bin/python -m pytest "${selection[@]}" "$@" || status=$?
# pytest's 5 means it ran nothing: a lane that selects no test is a broken lane, never a pass.
((status != 5)) || echo "test.sh: lane '$lane' selected no tests" >&2
exit "$status"
