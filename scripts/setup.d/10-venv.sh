#!/usr/bin/env bash
# The virtualenv every command runs from: .venv with this repository installed in editable mode
# (pyproject.toml) plus the extras named as arguments (test, lint, policy), so every module
# imports by its repository path. (A job holding AWS credentials installs from the hash lock
# instead: scripts/setup.d/15-deploy.sh.) Idempotent and quick when nothing changed: a stamp per extra
# holds the hash of the files it was installed from, and pip runs only when one differs.
#   bash scripts/setup.d/10-venv.sh [EXTRA...]
set -euo pipefail
cd "$(dirname "$0")/../.."

for extra in "$@"; do
  case $extra in
    test | lint | policy | lock) ;;
    *)
      echo "10-venv.sh: unknown extra '$extra'; allowed: test, lint, policy, lock" >&2
      exit 2
      ;;
  esac
done
python=${PYTHON:-}
if [ -z "$python" ]; then
  # Debian's python3, what the machines run; a fresh Debian lacks only the venv module.
  bash scripts/apt-install.sh python3 python3-venv
  python=/usr/bin/python3
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $python"
  "$python" -m venv .venv
fi

# What each part is installed from: the test extra also brings the sample Django project's
# packages, from the release's own list.
sources_of() {
  if [ "$1" = test ]; then echo pyproject.toml sample_app/requirements.txt; else echo pyproject.toml; fi
}
stale=()
for part in base "$@"; do
  read -ra sources <<<"$(sources_of "$part")"
  digest=$(cat "${sources[@]}" | sha256sum | cut -d' ' -f1)
  [ "$(cat ".venv/.installed-$part" 2>/dev/null)" = "$digest" ] || stale+=("$part=$digest")
done
((${#stale[@]})) || exit 0

spec=.
(($#)) && spec=".[$(IFS=,; echo "$*")]"
requirements=()
[[ " $* " == *" test "* ]] && requirements=(-r sample_app/requirements.txt)
# Progress, since pip is quiet and a fresh machine's install takes a minute or more: what is
# installed and why, then how many packages the venv holds after it.
installed() { .venv/bin/python -c 'import importlib.metadata as m; print(len({d.name for d in m.distributions()}))'; }
before=$(installed)
started=$SECONDS
echo "setup: pip installs this repository (editable) with ${*:-no extras}${requirements:+ + sample_app/requirements.txt}" \
  "into .venv (changed: ${stale[*]%%=*}; $before packages there now)..."
.venv/bin/pip install -q --disable-pip-version-check -e "$spec" "${requirements[@]}"
after=$(installed)
echo "setup: .venv ready in $((SECONDS - started)) s: $after packages ($((after - before)) new)"
for entry in "${stale[@]}"; do echo "${entry#*=}" >".venv/.installed-${entry%%=*}"; done
