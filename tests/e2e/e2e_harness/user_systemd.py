"""A real systemd (Debian 12's, the version the instances run) for tests of unit dependencies:
a private `systemd --user` manager, started in its own mount namespace where /run is a fresh
tmpfs holding /run/systemd/system (systemd refuses to run a manager on a host not booted with
it). Nothing of the host's systemd state is touched; the manager, its units and their
processes end with the fixture.

What it runs are unit files a test writes into its configuration directory. A user manager
has no User=/Group= switching and no system sandboxing, so a test gives it the rendered
[Unit] sections (the dependencies: what systemd does on a restart or a failure) with
[Service] sections of its own; the machine harness (machine.py) is what runs the units'
real command lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"


@dataclass(frozen=True)
class UserSystemd:
    runtime_dir: Path  # XDG_RUNTIME_DIR: the manager's private socket is below it
    unit_dir: Path

    @property
    def environment(self) -> dict[str, str]:
        """What `systemctl --user` needs to reach this manager."""
        return {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime_dir)}

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemctl", "--user", *args],
            env=self.environment,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def shim(self, directory: Path) -> Path:
        """A `systemctl` for scripts written for the system manager (the ops tool's): this one."""
        directory.mkdir(parents=True, exist_ok=True)
        shim = directory / "systemctl"
        shim.write_text(f'#!/bin/sh\nXDG_RUNTIME_DIR={self.runtime_dir} exec /usr/bin/systemctl --user "$@"\n')
        shim.chmod(0o755)
        return directory


@contextmanager
def user_systemd(base: Path) -> Iterator[UserSystemd]:
    # The runtime dir holds the manager's sockets: directly in the run's temp dir (0700), not in
    # `base`, a test's deeper tree, since a Unix socket's path has at most 107 bytes.
    runtime_dir, config = Path(tempfile.mkdtemp(prefix="xdg-runtime-")), base / "config"
    unit_dir = config / "systemd" / "user"
    unit_dir.mkdir(parents=True)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(base),
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "XDG_CONFIG_HOME": str(config),
    }
    script = f"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec {SYSTEMD} --user"
    log = (base / "systemd.log").open("wb")
    manager = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    systemd = UserSystemd(runtime_dir, unit_dir)
    try:
        deadline = time.monotonic() + 30
        # (`is-system-running` would say "offline": outside the namespace the host has no
        # /run/systemd/system; the manager's own state is what counts.)
        state = ("show", "-p", "SystemState", "--value")
        while systemd.systemctl(*state, check=False).stdout.strip() not in ("running", "degraded"):
            if manager.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd --user did not start: {(base / 'systemd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield systemd
    finally:
        manager.terminate()  # the manager stops its units, then exits
        try:
            manager.wait(timeout=60)
        except subprocess.TimeoutExpired:
            manager.kill()
            manager.wait(timeout=10)
        log.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
