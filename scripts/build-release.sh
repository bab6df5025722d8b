#!/usr/bin/env bash
# Builds the release artifact the instances install: <out-dir>/<release>.tar.gz holding
#   src/     the sample Django project (sample_app/, without caches)
#   wheels/  every wheel sample_app/requirements.txt needs, so `app-release install` builds the
#            venv offline (pip --no-index) on a machine that cannot reach PyPI.
# Usage: scripts/build-release.sh RELEASE [OUT_DIR]     (OUT_DIR defaults to build/releases)
# PYTHON picks the interpreter whose pip builds the wheels (default: .venv/bin/python, else
# python3); it must match the instances' Python minor version (Debian 12: 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:?usage: scripts/build-release.sh RELEASE [OUT_DIR]}
if [[ ! $release =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
  echo "build-release: RELEASE '$release' is invalid; allowed: letters, digits, . _ - (max 64, no leading . or -)" >&2
  exit 2
fi
out_dir=${2:-build/releases}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/src" "$staging/wheels" "$out_dir"
tar -C sample_app --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C "$staging/src" -xf -
"$python" -m pip wheel --quiet --disable-pip-version-check \
  --wheel-dir "$staging/wheels" -r sample_app/requirements.txt
# Sorted names, fixed owner and mtime: the same inputs give the same bytes.
tar -C "$staging" --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
  -czf "$out_dir/$release.tar.gz" src wheels
echo "$out_dir/$release.tar.gz"
