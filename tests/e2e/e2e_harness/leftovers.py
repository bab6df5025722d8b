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
