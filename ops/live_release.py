"""The live release: the String parameter (`releaseParameter` output, `/<project>/<stack>/release`)
that says which release every instance runs and a new instance boots (app-release `ensure`
reads it). The program only seeds it; this tool records each deploy or rollback in it once every
instance has been switched, confirmed and verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError, UsageError
from ops.stack import checked_release
from userdata.layout import RELEASE_PARAMETER, parameter_name


@dataclass(frozen=True)
class LiveReleaseParameter:
    """The stack's live release parameter and the client that reaches it."""

    ssm: Any
    name: str


def default_parameter(project: str, stack: str) -> str:
    """The name the program gives it (settings.parameter_name("release")), for runs without
    --outputs; tests/ops checks the two agree."""
    return parameter_name(project, stack, RELEASE_PARAMETER)


def record(ssm: Any, parameter: str, release: str) -> None:
    ssm.put_parameter(Name=parameter, Value=release, Type="String", Overwrite=True)


def read(ssm: Any, parameter: str) -> str:
    value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    try:
        return checked_release(value)
    except UsageError:
        raise OpsError(f"{parameter} holds {value!r}, which is not a release name") from None
