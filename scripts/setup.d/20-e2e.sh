#!/usr/bin/env bash
# End-to-end lane (tests/e2e) and the benchmarks (bench/): what the instances get from Debian
# (userdata.render.PACKAGES: python3-boto3 for app-fetch-secrets, python3-venv for app-release),
# the real parts the tests start (TLS redis-server, cloud-init's schema validator, systemd-analyze)
# and the tools the harness itself runs (unshare/setpriv from util-linux, openssl, redis-benchmark).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/apt-install.sh python3-boto3 python3-venv redis-server redis-tools openssl util-linux cloud-init systemd
bash scripts/setup.d/10-venv.sh test
