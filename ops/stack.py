"""Which stack to act on: `pulumi stack output --json` (a file or stdin) and/or flags."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import release_name
from ops.errors import UsageError

STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class StackTarget:
    stack: str
    region: str | None  # None: the standard AWS chain decides (AWS_REGION, ~/.aws/config)


def load_outputs(source: str) -> dict[str, Any]:
    """`-` reads stdin, so `pulumi stack output --json | python -m ops --outputs - verify` works."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise UsageError(f"--outputs: cannot read {source}: {error.strerror}") from None
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--outputs: {source} is not the JSON of `pulumi stack output --json` ({error.msg})") from None
    if not isinstance(outputs, dict):
        raise UsageError(f"--outputs: {source} holds a JSON {type(outputs).__name__}, expected an object of outputs")
    return outputs


def resolve_target(stack: str | None, region: str | None, outputs: dict[str, Any] | None) -> StackTarget:
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
    return StackTarget(name, region or outputs.get("region"))


def checked_release(value: str, source: str = "--release") -> str:
    """The stack config's release rule, checked here so a typo fails before Beat is paused."""
    if not release_name.is_release_name(value):
        raise UsageError(f"{source}: {value!r} is not a release name; use {release_name.RULE}")
    return value
