"""The config reference's tables (docs/configuration.md), generated from the config schema.

Each `<!-- schema: SECTION -->` ... `<!-- end schema -->` block of the doc is one table: the key,
type and default columns come from the schema (msgspec's JSON schema of the section: its
`Meta(description=…)`, ranges, allowed values and defaults), the notes column is kept from the
doc, row by key. Everything outside the blocks is prose, left as written.

    .venv/bin/python -m scripts.config_reference           rewrite docs/configuration.md
    .venv/bin/python -m scripts.config_reference --check   exit 1 if it is out of date
(tests/test_config_reference.py runs the check.)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

# The one place the schema is imported: the sections by their config key.
from config import SECTIONS

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
HEADER = "| key | type | default | notes |\n|---|---|---|---|\n"
_BLOCK = re.compile(r"<!-- schema: (?P<name>[A-Za-z.]+) -->\n(?P<body>.*?)<!-- end schema -->", re.S)
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def tables() -> dict[str, dict[str, Any]]:
    """Each table's JSON schema by its name: a section's config key, or `<section>.<key>` for an
    object nested in one (a queue object, the scaling object)."""
    _, components = msgspec.json.schema_components(list(SECTIONS.values()))
    found: dict[str, dict[str, Any]] = {}

    def visit(name: str, schema: dict[str, Any]) -> None:
        found[name] = schema
        for key, prop in schema["properties"].items():
            if ref := _ref_in(prop):
                visit(f"{name}.{key}", components[ref])

    for section, model in SECTIONS.items():
        visit(section, components[model.__name__])
    return found


def _ref_in(prop: dict[str, Any]) -> str | None:
    for candidate in (prop, prop.get("items", {})):
        if "$ref" in candidate:
            return str(candidate["$ref"]).rsplit("/", 1)[1]
    return None


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = [option for option in prop.get("anyOf", []) if option.get("type") != "null"]
    return options[0] if len(options) == 1 else prop


def type_text(prop: dict[str, Any]) -> str:
    """What a value must be, in words: the schema's description where it has one."""
    prop = _non_null(prop)
    kind = prop.get("type")
    if kind in ("integer", "number"):
        bounds = _number_text("int" if kind == "integer" else "number", prop)
        return f"{bounds}, {prop['description']}" if "description" in prop else bounds
    if "description" in prop:
        return str(prop["description"])
    if "$ref" in prop:
        return "an object (below)"
    if "enum" in prop:
        return " | ".join(f"`{value}`" for value in prop["enum"])
    if kind == "boolean":
        return "bool"
    if kind == "array":
        count = _range_text(prop.get("minItems"), prop.get("maxItems"))
        items = "objects (below)" if "$ref" in prop["items"] else f"each {type_text(prop['items'])}"
        return f"list{f' ({count})' if count else ''}, {items}"
    if kind == "object":
        return "object: name -> text"
    return "text"


def _range_text(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f">= {low}" if low is not None else (f"<= {high}" if high is not None else "")


def _number_text(kind: str, prop: dict[str, Any]) -> str:
    if "exclusiveMinimum" in prop:
        limits = [f"> {prop['exclusiveMinimum']}"] + ([f"<= {prop['maximum']}"] if "maximum" in prop else [])
        return f"{kind} {', '.join(limits)}"
    bounds = _range_text(prop.get("minimum"), prop.get("maximum"))
    return f"{kind} {bounds}" if bounds else kind


def default_text(key: str, prop: dict[str, Any], required: list[str]) -> str:
    if key in required:
        return "**required**"
    if "default" not in prop:
        return "its keys' defaults"
    return _value_text(prop["default"])


def _value_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, dict) and "name" in item for item in value):
        return " and ".join(f"`{item['name']}` ({_fields_text(item)})" for item in value)
    if isinstance(value, (list, tuple)):
        return f"`[{', '.join(str(item) for item in value)}]`"
    return f"`{json.dumps(value)}`"


def _fields_text(item: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in item.items() if key != "name" and value not in ([], ()))


def _cell(text: str) -> str:
    return _CELL_SEPARATOR.sub(r"\\|", text)


def notes_in(body: str) -> dict[str, str]:
    """The notes column of a table as written, by key."""
    notes = {}
    for line in body.splitlines():
        cells = _CELL_SEPARATOR.split(line)
        if len(cells) == 6 and (key := re.fullmatch(r" `([A-Za-z0-9]+)` ", cells[1])):
            notes[key[1]] = cells[4].strip()
    return notes


def table(schema: dict[str, Any], notes: dict[str, str]) -> str:
    rows = [
        f"| `{key}` | {_cell(type_text(prop))} | {_cell(default_text(key, prop, schema.get('required', [])))} "
        f"| {notes.get(key, '')} |\n".replace("|  |\n", "| |\n")
        for key, prop in schema["properties"].items()
    ]
    return HEADER + "".join(rows)


def render(doc: str) -> str:
    """The doc with every table regenerated; a missing or unknown table is an error."""
    wanted = tables()
    written = [match["name"] for match in _BLOCK.finditer(doc)]
    if unknown := sorted(set(written) - set(wanted)):
        raise ValueError(f"{DOC.name}: no config section or object named {', '.join(unknown)}")
    if missing := [name for name in wanted if name not in written]:
        raise ValueError(f"{DOC.name}: add a table for {', '.join(missing)}: <!-- schema: NAME --><!-- end schema -->")
    return _BLOCK.sub(
        lambda m: f"<!-- schema: {m['name']} -->\n{table(wanted[m['name']], notes_in(m['body']))}<!-- end schema -->",
        doc,
    )


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print(f"config_reference: unknown arguments {' '.join(argv)}; allowed: --check", file=sys.stderr)
        return 2
    current = DOC.read_text()
    try:
        fresh = render(current)
    except ValueError as error:
        print(f"config_reference: {error}", file=sys.stderr)
        return 1
    if argv:
        if fresh != current:
            print(f"config_reference: {DOC} is out of date: run .venv/bin/python -m scripts.config_reference")
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
