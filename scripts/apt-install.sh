#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs the Debian packages that are not installed yet (idempotent).
# Shared by scripts/setup.sh and every scripts/setup.d/ step, so there is one way to do it.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
echo "setup: apt installs ${#missing[@]} of $# Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Several setup steps (and developers) may run apt at once: wait for the lock instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -q
# policy-rc.d keeps package scripts from starting daemons (redis, cloud-init) on this host:
# the tests start their own, on loopback, with their own configuration.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
