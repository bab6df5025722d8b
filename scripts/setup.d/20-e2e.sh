#!/usr/bin/env bash
# End-to-end tests (tests/e2e) and benchmarks (bench/): what the instances get from Debian
# (userdata.render.PACKAGES: python3-boto3 for app-fetch-secrets, python3-venv for app-release)
# plus the tools the harness itself runs (unshare/setpriv from util-linux, redis-benchmark).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh python3-boto3 python3-venv redis-server redis-tools openssl util-linux cloud-init
