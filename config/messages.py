"""msgspec's error text rewritten as one line that names the config key, the value received
and what is allowed (the words each rule's Meta description carries)."""

from __future__ import annotations

import re
from typing import Any, get_args

import msgspec
from msgspec import Meta

from config.schema import SECTIONS, _Section

_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.S)


def _describe(section: str, value: Any, error: str) -> str:
    """One line from msgspec's message: `<section><path>: ...` with the value."""
    match = _AT.fullmatch(error)
    message, path = (match["message"], match["path"] or "") if match else (error, "")
    where = f"{section}{path}"
    if unknown := re.match(r"Object contains unknown field `([^`]+)`", message):
        model = _model_at(SECTIONS[section], path)
        allowed = (
            ", ".join(f.encode_name for f in msgspec.structs.fields(model)) if model else "see docs/configuration.md"
        )
        return f"{where}.{unknown[1]}: unknown key; allowed keys here: {allowed}"
    if missing := re.match(r"Object missing required field `([^`]+)`", message):
        return f"{where}.{missing[1]}: missing; this key is required (see docs/configuration.md)"
    if key_problem := re.fullmatch(
        r"([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_]+)?): (.*)", message, re.S
    ):  # from __post_init__
        return f"{where}.{key_problem[1]}: {key_problem[2]}"
    field = _field_at(SECTIONS[section], path)
    rule = _description_in(field.type) if field else None
    received = _value_at(value, path)
    if message.startswith("Invalid enum value") and field:
        message = "allowed: " + ", ".join(repr(a) for a in get_args(field.type) if isinstance(a, str))
    elif message.startswith("Expected `str` matching regex") and rule:
        message = f"use {rule}"
    elif re.match(r"Expected `str( \| null)?`, got `(float|int)`", message):
        # YAML reads an unquoted 7.1 as a number.
        message = f'a number where text is expected; quote it in the stack file: "{received}"'
    got = f"got {received!r}; " if received is not _ABSENT else ""
    return f"{where}: {got}{message[0].lower()}{message[1:]}"


def _field_at(model: type[_Section], path: str) -> msgspec.structs.FieldInfo | None:
    """The field a value at `path` belongs to (an element of a list belongs to the list's field)."""
    parent, _, name = re.sub(r"(\[\d+\])+\Z", "", path).rpartition(".")
    owner = _model_at(model, parent)
    return next((f for f in msgspec.structs.fields(owner) if f.encode_name == name), None) if owner else None


def _description_in(annotation: Any) -> str | None:
    """The words a field's rule carries (its Meta description)."""
    for arg in get_args(annotation):  # through Optional, tuple[...] and Annotated[...]
        found = arg.description if isinstance(arg, Meta) else _description_in(arg)
        if found:
            return str(found)
    return None


_ABSENT = object()


def _value_at(value: Any, path: str) -> Any:
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        key, index = part
        try:
            value = value[key] if key else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return value


def _model_at(model: type[_Section], path: str) -> type[_Section] | None:
    for key, _index in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        if not key:
            continue
        field = next((f for f in msgspec.structs.fields(model) if f.encode_name == key), None)
        inner = _section_in(field.type) if field else None
        if inner is None:
            return None
        model = inner
    return model


def _section_in(annotation: Any) -> type[_Section] | None:
    if isinstance(annotation, type) and issubclass(annotation, _Section):
        return annotation
    for arg in get_args(annotation):  # through Optional, tuple[...] and Annotated[...]
        if (found := _section_in(arg)) is not None:
            return found
    return None
