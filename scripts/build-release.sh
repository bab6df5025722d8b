#!/usr/bin/env bash
# Builds the release artifact the instances install: <out-dir>/<release>.tar.gz holding
#   src/     the sample Django project (sample_app/, without caches)
#   static/  collectstatic's output (hashed, compressed names), made here with the project's
#            proj.settings.build: the release tree is read-only on the instances
#   wheels/  every wheel of sample_app/requirements.lock (sample_app/requirements.txt, hash-locked
#            by scripts/lock.sh), each checked against its recorded hashes, so `app-release
#            install` builds the venv offline (pip --no-index) on a machine that cannot reach PyPI.
# and beside it <release>.tar.gz.sha256 (sha256sum's format), uploaded with it: app-release checks
# the artifact against it before unpacking and refuses a mismatch or a missing checksum.
# Usage: scripts/build-release.sh RELEASE [OUT_DIR]     (OUT_DIR defaults to build/releases)
# APP_SOURCE packs a variant of the sample project instead (same requirements; the tests change
# its stylesheet to build a second release with other hashed static names).
# The wheels are built by the instances' own interpreter, Debian 12's /usr/bin/python3 (through a
# builder venv in build/release-builder): dependency markers such as redis's
# `async-timeout; python_full_version < "3.11.3"` must be decided for 3.11.2, not for whatever
# Python this machine's .venv has. PYTHON overrides it for an image with another Python.
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:?usage: scripts/build-release.sh RELEASE [OUT_DIR]}
out_dir=${2:-build/releases}
python=${PYTHON:-/usr/bin/python3}
app=${APP_SOURCE:-sample_app}
# The stack config's and the ops tool's own rule (release_name.py), not a copy of it.
if ! problem=$("$python" release_name.py "$release" 2>&1); then
  echo "build-release: $problem" >&2
  exit 2
fi
builder=build/release-builder/$(basename "$python")
[ -x "$builder/bin/pip" ] || "$python" -m venv "$builder"

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/src" "$staging/wheels" "$out_dir"
tar -C "$app" --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C "$staging/src" -xf -
# Released wheels only: building an sdist would run build tools that no hash covers.
"$builder/bin/pip" wheel --quiet --disable-pip-version-check --require-hashes --only-binary :all: \
  --wheel-dir "$staging/wheels" -r sample_app/requirements.lock
# collectstatic with the release's own packages (from the wheels just checked), then dropped.
"$builder/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-index \
  --find-links "$staging/wheels" --target "$staging/collect" -r sample_app/requirements.lock
(cd "$staging/src" && PYTHONPATH="$staging/collect" DJANGO_SETTINGS_MODULE=proj.settings.build \
  DJANGO_STATIC_ROOT="$staging/static" "$python" manage.py collectstatic --noinput --verbosity 0)
# Sorted names, fixed owner and mtime: the same inputs give the same bytes.
tar -C "$staging" --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
  -czf "$out_dir/$release.tar.gz" src static wheels
(cd "$out_dir" && sha256sum "$release.tar.gz" >"$release.tar.gz.sha256")
echo "$out_dir/$release.tar.gz"
