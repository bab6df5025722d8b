"""Which stack to act on: `pulumi stack output --json` (a file or stdin) and/or flags, and the
Pulumi project it belongs to (the outputs' `project`, else the one Pulumi.yaml names)."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import release_name
from ops.errors import UsageError
from userdata.layout import REGION_PATTERN

REGION_NAME = re.compile(REGION_PATTERN)
STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# The program this tool ships with: its Pulumi.yaml names the project.
PROGRAM_DIR = Path(__file__).resolve().parent.parent


def program_project(program_dir: Path = PROGRAM_DIR) -> str:
    """The Pulumi project's name, as Pulumi.yaml gives it: the program's config namespace, the
    `Project` tag and the first part of its resource names (userdata.layout.resource_prefix)."""
    path = program_dir / "Pulumi.yaml"
    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"--outputs: without a 'project' output the project comes from {path}: {error}") from None
    if not isinstance(name, str) or not name:
        raise UsageError(f"--outputs: without a 'project' output the project comes from {path}, which names none")
    return name


@dataclass(frozen=True)
class StackLocation:
    """Which stack of which Pulumi project, and the AWS region it lives in."""

    stack: str
    region: str | None  # from --region or the outputs; None: the environment decides (region_from_environment)
    project: str  # the instances' and groups' Project tag


def load_outputs(source: str) -> dict[str, Any]:
    """`-` reads stdin, so `pulumi stack output --json | python -m ops --outputs - verify` works."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise UsageError(f"--outputs: cannot read {source}: {error.strerror}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        raise UsageError(
            f"--outputs: {source} is not UTF-8 text (byte {error.start}); expected the JSON of "
            "`pulumi stack output --json`"
        ) from None
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--outputs: {source} is not the JSON of `pulumi stack output --json` ({error.msg})") from None
    if not isinstance(outputs, dict):
        raise UsageError(f"--outputs: {source} holds a JSON {type(outputs).__name__}, expected an object of outputs")
    return outputs


def resolve_stack(stack: str | None, region: str | None, outputs: dict[str, Any] | None) -> StackLocation:
    """Flags win over outputs, but a flag that contradicts the outputs is refused: acting on
    one stack with another stack's outputs is exactly the mistake this guards against."""
    outputs = outputs or {}
    from_outputs = outputs.get("stack")
    if stack and from_outputs and stack != from_outputs:
        raise UsageError(f"--stack: {stack!r} contradicts the outputs' stack {from_outputs!r}")
    name = stack or from_outputs
    if not name:
        raise UsageError("--stack: required (or --outputs with a 'stack' output)")
    if not isinstance(name, str) or not STACK_NAME.fullmatch(name):
        raise UsageError(f"--stack: {name!r} is not a stack name (letters, digits, '_', '.', '-')")
    project = outputs.get("project") or program_project()
    if not isinstance(project, str):
        raise UsageError(f"--outputs: the 'project' output is {project!r}, not a Pulumi project name")
    region_given = first_region(("--region", region), ("the outputs' region", outputs.get("region")))
    return StackLocation(name, region_given, project)


def region_from_environment() -> str | None:
    """boto3 itself reads only AWS_DEFAULT_REGION; AWS_REGION is what the AWS CLI v2 and the
    other SDKs read (and what the README names), so it comes first. None: the config file decides."""
    return first_region(*((name, os.environ.get(name)) for name in ("AWS_REGION", "AWS_DEFAULT_REGION")))


def first_region(*sources: tuple[str, object]) -> str | None:
    """The first region given, checked: a wrong one fails here, not as an endpoint error later."""
    for source, value in sources:
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not REGION_NAME.fullmatch(value):
            raise UsageError(f"--region: {source} is {value!r}, not an AWS region name such as eu-west-1")
        return value
    return None


def checked_release(value: object, source: str = "--release") -> str:
    """The stack config's release rule, checked here so a typo fails before Beat is paused."""
    if not isinstance(value, str) or not release_name.is_release_name(value):
        raise UsageError(f"{source}: {value!r} is not a release name; use {release_name.RULE}")
    return value
