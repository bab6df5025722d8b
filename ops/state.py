"""What the tool remembers between runs, per stack: the release being rolled out, the one it
replaces (what `rollback` goes back to) and whether the rollout finished. app-release's `list`
is sorted by name, not by time, so "the previous release" has to be written down somewhere."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "django-stack-ops"


@dataclass(frozen=True)
class RolloutRecord:
    release: str  # the release being rolled out
    previous: str | None
    complete: bool


class StateStore:
    def __init__(self, directory: Path, stack: str) -> None:
        self.path = directory / f"{stack}.json"

    def load(self) -> RolloutRecord | None:
        if not self.path.exists():
            return None
        record = json.loads(self.path.read_text())
        if "target" in record:  # written before the field was named for what it holds
            record["release"] = record.pop("target")
        return RolloutRecord(**record)

    def save(self, record: RolloutRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(record), indent=2) + "\n")
        os.replace(scratch, self.path)  # a crash never leaves half a record
