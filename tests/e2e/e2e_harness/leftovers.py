"""Temp trees a test run names by its pid (`<prefix><pid>-<random>`), so that the next run can
tell what a killed one left from what a running one still uses."""

from __future__ import annotations

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


def entries_owned_by(uid: int, parent: str | None = None) -> list[Path]:
    """What `uid` owns directly under `parent` (the temp dir). The simulated machines' app user
    has a uid of the harness's own (machine.APP_UID), so everything it owns in the host's /tmp is
    what the units left there: production gives each unit a private /tmp (PrivateTmp=yes, removed
    with the unit), which the harness does not emulate (the test CA the units read lives in the
    run's tree under /tmp). Celery's prefork pool leaves its `pymp-*` directories so."""
    return [path for path in Path(parent or tempfile.gettempdir()).iterdir() if path.lstat().st_uid == uid]
