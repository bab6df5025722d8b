"""The live release: the String parameter (`releaseParameter` output, `/<project>/<stack>/release`)
that says which release every instance runs and a new instance boots (app-release `ensure`
reads it). The program only seeds it; this tool records each deploy or rollback in it once every
instance has been switched, confirmed and verified, as RELEASE@sha256:HEX: the artifact's digest
pinned with the release, so instances install no other artifact (docs/release-digest.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError, UsageError
from ops.stack import checked_release
from userdata.layout import RELEASE_DIGEST_SEPARATOR, RELEASE_PARAMETER, parameter_name

SHA256 = re.compile(r"[0-9a-f]{64}")
# Where `python -m ops build-release` writes R.tar.gz and its R.tar.gz.sha256 by default.
BUILD_DIR = Path(__file__).resolve().parent.parent / "build" / "releases"


@dataclass(frozen=True)
class LiveReleaseParameter:
    """The stack's live release parameter and the client that reaches it."""

    ssm: Any
    name: str


@dataclass(frozen=True)
class PinnedRelease:
    release: str
    sha256: str | None  # None only in a value recorded before digests were pinned

    def __str__(self) -> str:
        return f"{self.release}{RELEASE_DIGEST_SEPARATOR}{self.sha256}" if self.sha256 else self.release


def default_parameter(project: str, stack: str) -> str:
    """The name the program gives it (settings.parameter_name("release")), for runs without
    --outputs; tests/ops checks the two agree."""
    return parameter_name(project, stack, RELEASE_PARAMETER)


def checked_sha256(value: str, source: str = "--sha256") -> str:
    if not SHA256.fullmatch(value):
        raise UsageError(f"{source}: {value!r} is not a SHA-256 (64 lowercase hex digits)")
    return value


def built_sha256(release: str) -> str | None:
    """The digest `build-release` wrote beside the artifact it built here (sha256sum's format)."""
    path = BUILD_DIR / f"{release}.tar.gz.sha256"
    try:
        digest = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return checked_sha256(digest, str(path))


def record(ssm: Any, parameter: str, pinned: PinnedRelease) -> None:
    ssm.put_parameter(Name=parameter, Value=str(pinned), Type="String", Overwrite=True)


def read(ssm: Any, parameter: str) -> PinnedRelease:
    value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    release, separator, digest = value.partition(RELEASE_DIGEST_SEPARATOR)
    try:
        return PinnedRelease(checked_release(release), checked_sha256(digest) if separator else None)
    except UsageError:
        raise OpsError(f"{parameter} holds {value!r}, which is not a release name (RELEASE@sha256:HEX)") from None
