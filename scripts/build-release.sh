#!/usr/bin/env bash
# The sample Django project's release artifact, for the tests, the VM image and the benchmarks:
# python -m ops build-release (ops/build_release.py) on sample_app/ with its hash lock, for this
# machine's architecture. Writes <out-dir>/<release>.tar.gz (src/, venv/ ready but its interpreter,
# static/, manifest.json) and its .sha256, which app-release checks before unpacking.
# Usage: scripts/build-release.sh RELEASE [OUT_DIR]     (OUT_DIR defaults to build/releases)
# APP_SOURCE packs a variant of the sample project instead (same requirements; the tests change
# its stylesheet to build a second release with other hashed static names).
# Any other project: python -m ops build-release --app PATH --release R --stack S (README "Ship your app").
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:?usage: scripts/build-release.sh RELEASE [OUT_DIR]}
out_dir=${2:-build/releases}
case $(uname -m) in
  aarch64) architecture=arm64 ;;
  *) architecture=x86_64 ;;
esac
# The lock's wheels only, each checked against its recorded hashes (pip --require-hashes) when
# downloaded, then installed into venv/ for the target. The
# builder's report goes to stderr; stdout is the artifact's path, as callers (scripts/vm) read it.
.venv/bin/python -m ops build-release --app "${APP_SOURCE:-sample_app}" --requirements sample_app/requirements.lock \
  --architecture "$architecture" --release="$release" --out "$out_dir" >&2
echo "$out_dir/$release.tar.gz"
