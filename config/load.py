"""`load_settings`: the project's config values in, a frozen `Settings` out, or one ConfigError
listing every problem, one line each. Pure (tested without Pulumi); each config section is
validated on its own, so every broken section is reported in one run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from config.messages import _describe
from config.rules import _across_sections, _name_problems
from config.schema import SECTIONS, ConfigError, Settings, _snake
from userdata.layout import ORIGINAL_PROJECT, REGION_PATTERN

REGION_NAME = re.compile(REGION_PATTERN)


def load_settings(
    raw: Mapping[str, Any],
    *,
    stack: str,
    region: str | None,
    project: str = ORIGINAL_PROJECT,
    secret_keys: Collection[str] = (),
) -> Settings:
    """Builds the settings from the project's config values (key without namespace -> value).

    Values arrive as Pulumi passes them: objects and lists as JSON text, scalars as strings.
    `secret_keys`: the keys the engine marks secret (set with `pulumi config set --secret`).
    Raises ConfigError listing every problem, one line each, named as it is set: `aws:region`,
    and the project's own keys in its namespace (`<project>:<key>`, written here without it).
    """
    stack_problems: list[str] = []
    if not region:
        stack_problems.append("aws:region: missing; set it with `pulumi config set aws:region eu-west-1`")
    elif not REGION_NAME.fullmatch(region):
        stack_problems.append(f"aws:region: got {region!r}; expected an AWS region name such as eu-west-1")
    stack_problems += _name_problems(project, stack)
    problems: list[str] = []
    values = {key: _decode(value) for key, value in raw.items()}
    for key in sorted(set(values) - set(SECTIONS)):
        if key.split(".")[0] in SECTIONS:
            # `pulumi config set web.count 3` (no --path) stores one key named "web.count".
            problems.append(
                f"{key}: set as a flat key named {key!r}; set it inside its section with "
                f"`pulumi config set --path {key} VALUE` and remove this one (`pulumi config rm {key}`)"
            )
        else:
            problems.append(f"{key}: unknown key; allowed keys here: {', '.join(SECTIONS)}")
    # The engine hands the program a secret decrypted and marks its whole key; the stack file (and
    # so the offline render) holds it as {"secure": ...}. Either way it would go out in plain text.
    secret = [(key, "") for key in sorted(set(secret_keys) & set(values))]
    secret += [(key, path) for key, value in values.items() for path in _secure_paths(value) if key not in secret_keys]
    problems += [f"{key}{path}: {SECRET_IN_CONFIG}" for key, path in secret]
    unread = {key for key, _ in secret}  # reported above: not judged again as a wrongly typed value

    sections: dict[str, Any] = {}
    for key, section in SECTIONS.items():
        if key in unread:
            continue
        try:
            # strict=False: the CLI stores `pulumi config set --path web.desiredCapacity 3` as a string.
            sections[key] = msgspec.convert(values.get(key, {}), section, strict=False)
        except msgspec.ValidationError as error:
            problems.append(_describe(key, values.get(key, {}), str(error)))
    if not problems and not stack_problems:
        problems += _across_sections(sections, region)
    key_region = sections["security"].kms_key_region() if "security" in sections else None
    if key_region and region and key_region != region:
        problems.append(f"security.kmsKeyArn: the key is in {key_region}; it must be in the stack's region ({region})")
    if stack_problems or problems:
        raise ConfigError("\n".join([*stack_problems, *(f"{project}:{line}" for line in problems)]))
    attributes = {_snake(key): section for key, section in sections.items()}
    return Settings(project=project, stack=stack, region=region or "", **attributes)


SECRET_IN_CONFIG = (
    "a `pulumi config set --secret` value; stack config lands in plain user-data or in the state, so "
    "no key here takes a secret: store it in Parameter Store (SecureString) and name it in app.secretParameters"
)


def _secure_paths(value: Any, path: str = "") -> list[str]:
    """Where a stack file's encrypted values ({"secure": "v1:..."}) sit in one key's value."""
    if isinstance(value, dict):
        if list(value) == ["secure"]:
            return [path]
        return [found for key, inner in value.items() for found in _secure_paths(inner, f"{path}.{key}")]
    if isinstance(value, list):
        return [found for index, inner in enumerate(value) for found in _secure_paths(inner, f"{path}[{index}]")]
    return []


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
