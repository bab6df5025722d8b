"""What the tool remembers between runs, per stack: the release being rolled out, the one it
replaces (what `rollback` goes back to) and whether the rollout finished. app-release's `list`
is sorted by name, not by time, so "the previous release" has to be written down somewhere."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import release_name
from ops.errors import OpsError
from ops.live_release import SHA256
from userdata.layout import resource_prefix


def default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "django-stack-ops"


@dataclass(frozen=True)
class RolloutRecord:
    release: str  # the release being rolled out
    previous: str | None
    complete: bool
    # Their artifacts' digests, recorded with them in the live release (None: not known, e.g. a
    # record written before digests were pinned).
    sha256: str | None = None
    previous_sha256: str | None = None


REQUIRED_FIELDS = {"release", "previous", "complete"}
DIGEST_FIELDS = ("sha256", "previous_sha256")


class StateStore:
    def __init__(self, directory: Path, project: str, stack: str) -> None:
        # Named as the stack's resources are: another project's `prod` has its own record.
        self.path = directory / f"{resource_prefix(project, stack)}.json"

    def load(self) -> RolloutRecord | None:
        """The record, or None when there is none; anything this tool did not write (a truncated
        file, an edited one) is refused in one line, since its releases end up in commands."""
        try:
            record = json.loads(self.path.read_bytes().decode())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # JSON and UTF-8 errors are ValueErrors
            raise self._corrupt(str(error).splitlines()[0]) from None
        if isinstance(record, dict) and "target" in record:  # an older record's name (UPGRADE.md)
            record["release"] = record.pop("target")
        if not isinstance(record, dict) or not REQUIRED_FIELDS <= set(record) <= REQUIRED_FIELDS | set(DIGEST_FIELDS):
            raise self._corrupt("expected an object with release, previous, complete, sha256 and previous_sha256")
        release, previous, complete = record["release"], record["previous"], record["complete"]
        if not release_name.is_release_name(release):
            raise self._corrupt(f"release {release!r} is not a release name")
        if previous is not None and not release_name.is_release_name(previous):
            raise self._corrupt(f"previous {previous!r} is not a release name")
        if not isinstance(complete, bool):
            raise self._corrupt(f"complete {complete!r} is not true or false")
        digests = [record.get(key) for key in DIGEST_FIELDS]
        for key, digest in zip(DIGEST_FIELDS, digests, strict=True):
            if digest is not None and not (isinstance(digest, str) and SHA256.fullmatch(digest)):
                raise self._corrupt(f"{key} {digest!r} is not a SHA-256")
        return RolloutRecord(release, previous, complete, *digests)

    def _corrupt(self, detail: str) -> OpsError:
        return OpsError(
            f"state file {self.path} is not a record this tool wrote ({detail}); remove it and name --release"
        )

    def save(self, record: RolloutRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(record), indent=2) + "\n")
        os.replace(scratch, self.path)  # a crash never leaves half a record
