#!/usr/bin/env bash
# Lint and types (docs/development.md, "Lint and types"): ruff format and lint, strict mypy on everything that runs in
# production or operations (pyproject.toml), actionlint and zizmor on the GitHub workflows, shellcheck on
# the shell scripts. Runs every check, prints what failed, exits non-zero if any did. Needs
# `bash scripts/setup.sh guardrails` first; the guardrails lane runs it (tests/guardrails/test_lint.py).
#   bash scripts/lint.sh --fix   formats and applies ruff's safe fixes first, then checks
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
bin=.venv/bin

if [[ ${1:-} == --fix ]]; then
  "$bin/ruff" format .
  "$bin/ruff" check --fix --quiet . || true
elif (($#)); then
  echo "lint.sh: unknown argument '$1'; allowed: --fix" >&2
  exit 2
fi

failed=()
check() {
  echo "lint: $*"
  "$@" || failed+=("$*")
}

check "$bin/ruff" format --check .
check "$bin/ruff" check --no-fix .
check "$bin/mypy"
# The machine scripts have no .py suffix, so each is a `__main__` to mypy: one run per script.
for script in userdata/files/*; do
  check "$bin/mypy" "$script"
done
check "$bin/actionlint" -no-color -oneline
check "$bin/zizmor" --offline --no-progress --quiet .github/
mapfile -t shell_scripts < <(
  find . \( -path ./.venv -o -path ./.git -o -path ./build -o -path ./out -o -name node_modules -o -path ./ops/remote \) \
    -prune -o -type f -name '*.sh' -print | sort
)
shell_scripts+=(.ci/run)
check shellcheck "${shell_scripts[@]}"
# The ops tool's remote scripts (ops/remote/*.sh are templates and pieces), as SSM runs them: every
# script rendered for each role, read as POSIX sh. Not followed: the env files they source exist on
# instances only (SC1091); not unreachable: functions called as "check_$1" and helpers a script
# leaves unused (SC2317). mypy (above) reads their Python parts, ops/remote/*.py.
remote=$(mktemp -d)
trap 'rm -rf "$remote"' EXIT
check "$bin/python" -m ops.scripts --render-all "$remote"
check shellcheck --shell=sh --exclude=SC1091,SC2317 "$remote"/*.sh

if ((${#failed[@]})); then
  printf 'lint: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "lint: all checks passed"
