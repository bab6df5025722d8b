"""Temp trees a test run names by its pid (`<prefix><pid>-<random>`), so that the next run can
tell what a killed one left from what a running one still uses."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path


def trees_of_dead_runs(prefix: str, parent: str | None = None) -> list[Path]:
    """The directories under `parent` (the temp dir) named `<prefix><pid>-*` whose pid is gone."""
    found = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = path.name.removeprefix(prefix).split("-")[0]
        if path.is_dir() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            found.append(path)
    return found


def remove_dead_runs(prefix: str, parent: str | None = None) -> list[Path]:
    """Removes the trees of dead runs (trees_of_dead_runs) after killing every process still
    holding one (a daemon or unit of the killed run logs into it, runs from it or mounts it);
    returns them."""
    stale = trees_of_dead_runs(prefix, parent)
    if stale:
        kill_holders(stale)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def kill_holders(trees: list[Path]) -> None:
    """SIGKILL to every process but this one and init naming one of `trees` in its command line,
    working directory, open files or, in a mount namespace of its own, its mounts."""
    marks = [str(path).encode() for path in trees]
    own_mounts = os.readlink("/proc/self/ns/mnt")
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) in (1, os.getpid()):
            continue
        try:
            seen = [proc.joinpath("cmdline").read_bytes(), os.readlink(proc / "cwd").encode()]
            seen += [os.readlink(fd).encode() for fd in proc.joinpath("fd").iterdir()]
            # A unit's namespace mounts the tree; this namespace's mounts are every process's.
            if os.readlink(proc / "ns/mnt") != own_mounts:
                seen.append(proc.joinpath("mountinfo").read_bytes())
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if any(mark in text for mark in marks for text in seen):
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


def entries_owned_by(uid: int, parent: str = "/tmp") -> list[Path]:
    """What `uid` owns directly under `parent`, by default the host's /tmp: where the units'
    processes write, their environment being the unit's (no TMPDIR, so not the test run's temp
    dir). The simulated machines' app user has a uid of the harness's own (machine.APP_UID), so
    everything it owns in the host's /tmp is what the units left there: production gives each
    unit a private /tmp (PrivateTmp=yes, removed with the unit), which the harness does not
    emulate (the test CA the units read lives in the run's tree under /tmp). Celery's prefork
    pool leaves its `pymp-*` directories so."""
    return [path for path in Path(parent).iterdir() if path.lstat().st_uid == uid]
