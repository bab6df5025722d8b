"""The offline render's files, for a reviewer:

- `<kind>/` per kind of machine (one per launch template: web, worker, worker-beat): its exact
  user-data, the tags its instances get, and every file the user-data writes, at its machine path;
- `policies/` and `documents/`: every JSON document an input carries (IAM, key and topic policies,
  the dashboard), pretty-printed;
- `resources.md`: a count by type, the machine kinds, then every resource under its component
  (the tree `pulumi preview` shows), one line each with its inputs; documents and user-data as a
  pointer to their file; secrets as [secret]; values the fake AWS made up marked «like this»;
- `resources.json`: every resource's inputs flattened to dotted keys, what `--compare` diffs.

The output directory is replaced as a whole: rendered beside it, then swapped in.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_render.fake_aws import LAUNCH_TEMPLATE_TYPE, SECRET_SIG, SECRET_SIG_KEY, RecordedResource, write_only
from offline_render.program import MachineKind, StackRender
from userdata.render import written_files

# What marks a directory as a render, so replacing it never deletes anything else.
MARKER = "resources.md"
RESOURCES_JSON = "resources.json"
# A string input this long is a document or encoded data: a file of its own, or a digest.
BLOB_CHARS = 200
VALUE_CHARS = 60  # a longer value is cut on its resources.md line (resources.json has it whole)
LINE_CHARS = 300  # where a resources.md line stops listing inputs (tests: none over 400)


class StandIn(str):
    """What the report writes instead of a value (a secret, a pointer to a file): shown whole."""


SECRET = StandIn("[secret]")
WRITE_ONLY = StandIn("[write-only]")


@dataclass(frozen=True)
class RenderFile:
    content: str
    mode: int = 0o644


def _hide_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return SECRET
        # A write-only input's value is made afresh on each run and never stored: not shown.
        return {k: WRITE_ONLY if write_only(k) else _hide_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secrets(v) for v in value]
    return value


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, scalar) pairs: `tags.Name`, `ingress[0].fromPort`; an empty map or list as is."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_base64(text: str) -> bool:
    with contextlib.suppress(binascii.Error, ValueError):
        return bool(base64.b64decode(text, validate=True))
    return False


class _Blobs:
    """Takes the long values out of the inputs: user-data points at its kind's directory, a JSON
    document goes to its own pretty-printed file, anything else long is shown by its digest."""

    def __init__(self, kinds: list[MachineKind]) -> None:
        self.kind_of_template = {kind.template: kind.name for kind in kinds}
        self.files: dict[str, RenderFile] = {}

    def pointer(self, resource: RecordedResource, key: str, value: str) -> StandIn | None:
        if resource.type_ == LAUNCH_TEMPLATE_TYPE and key == "userData":
            kind = self.kind_of_template[resource.name]
            return StandIn(f"→ {kind}/user-data.yaml (gzip+base64, sha256 {_digest(value)})")
        if len(value) <= VALUE_CHARS:
            return None
        with contextlib.suppress(ValueError):
            document = json.loads(value)
            if not isinstance(document, dict | list):
                return None
            folder = "policies" if "olicy" in key else "documents"
            path = f"{folder}/{resource.name}.{key}.json"
            self.files[path] = RenderFile(json.dumps(document, indent=2, sort_keys=True) + "\n")
            return StandIn(f"→ {path} (sha256 {_digest(value)})")
        if len(value) >= BLOB_CHARS and _is_base64(value):
            return StandIn(f"[{len(value)} base64 characters, sha256 {_digest(value)}]")
        return None


def _public_inputs(resource: RecordedResource, blobs: _Blobs) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, value in flatten(_hide_secrets(resource.inputs)):
        pointer = blobs.pointer(resource, key, value) if isinstance(value, str) else None
        shown[key] = pointer or value
    return shown


class _Placeholders:
    def __init__(self, values: frozenset[str]) -> None:
        # Short ones ("CNAME", the record type an answer carries) are words, not made-up values.
        self.usable = sorted((v for v in values if len(v) >= 8), key=len, reverse=True)

    def in_text(self, text: str) -> list[str]:
        # Longest first, so a value inside a longer one (an id in its ARN) is not found again; only
        # those the text holds: a regex of all ~170 tries each at every character, 5x slower.
        present = [value for value in self.usable if value in text]
        return sorted(set(re.findall("|".join(map(re.escape, present)), text))) if present else []


def _shown(value: Any, placeholders: _Placeholders) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # the engine sends every number as a float
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, StandIn):
        return text
    cut = text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
    return f"«{cut}»" if isinstance(value, str) and placeholders.in_text(value) else cut


def _line(resource: RecordedResource, inputs: dict[str, Any], placeholders: _Placeholders, depth: int) -> str:
    line = "  " * depth + f"- `{resource.type_}` **{resource.name}**" + (" (protected)" if resource.protected else "")
    # Tags are in resources.json; the top-level inputs come first, nested ones after, each by name.
    shown = sorted(
        (
            (k, v)
            for k, v in inputs.items()
            if re.split(r"[.\[]", k)[0] not in ("tags", "tagsAll") and v not in ({}, [])
        ),
        key=lambda kv: ("." in kv[0] or "[" in kv[0], kv[0]),
    )
    parts: list[str] = []
    for index, (key, value) in enumerate(shown):
        part = f"{key}={_shown(value, placeholders)}"
        if len(line) + len(": ") + len(", ".join([*parts, part])) > LINE_CHARS:
            parts.append(f"… {len(shown) - index} more in resources.json")
            break
        parts.append(part)
    return line + (": " + ", ".join(parts) if parts else "")


def _is_component(resource: RecordedResource, parents: set[str]) -> bool:
    # A provider's type has a module path (`aws:ec2/vpc:Vpc`); a component's does not.
    return resource.key in parents or "/" not in resource.type_.split(":")[1]


def resource_table(render: StackRender, inputs: dict[str, dict[str, Any]], file_counts: dict[str, int]) -> str:
    placeholders = _Placeholders(render.placeholders)
    counts = Counter(r.type_ for r in render.resources)
    kinds = render.kinds
    lines = [
        f"# Stack `{render.stack}`: {len(render.resources)} resources, {len(kinds)} kinds of machine",
        "",
        "Rendered offline under a fake AWS. Values in «» are placeholders it made up (ids, ARNs,",
        "endpoints, the account); AWS assigns the real ones. Secrets show as [secret], write-only",
        "inputs (values the state never holds) as [write-only]; the full inputs, flattened to dotted",
        f"keys, are in {RESOURCES_JSON}.",
        "",
        "## Count by type",
        "",
        "| resources | type |",
        "|---:|---|",
        *(f"| {n} | `{t}` |" for t, n in sorted(counts.items(), key=lambda tn: (-tn[1], tn[0]))),
        "",
        "## Machines: one directory per launch template",
        "",
        "| kind | role | instances | launch template | files | placeholders in its files |",
        "|---|---|---:|---|---:|---|",
    ]
    for kind in kinds:
        found = ", ".join(f"«{p}»" for p in placeholders.in_text(kind.user_data)) or "none"
        lines.append(
            f"| [`{kind.name}/`]({kind.name}/user-data.yaml) | {kind.role} | {kind.capacity} | `{kind.template}` "
            f"| {file_counts[kind.name]} | {found} |"
        )
    lines += ["", "## Resources by component", ""]
    children: dict[str | None, list[RecordedResource]] = {}
    for resource in render.resources:
        children.setdefault(resource.parent, []).append(resource)
    parents = {r.parent for r in render.resources if r.parent}

    def tree(parent: str | None, depth: int) -> None:
        for resource in sorted(children.get(parent, []), key=lambda r: (not _is_component(r, parents), r.key)):
            lines.append(_line(resource, inputs[resource.key], placeholders, depth))
            tree(resource.key, depth + 1)

    tree(None, 0)
    return "\n".join(lines) + "\n"


def render_files(render: StackRender) -> dict[str, RenderFile]:
    """Every file of the render, by its path in the output directory."""
    files: dict[str, RenderFile] = {}
    file_counts: dict[str, int] = {}
    for kind in render.kinds:
        files[f"{kind.name}/user-data.yaml"] = RenderFile(kind.user_data)
        files[f"{kind.name}/tags.json"] = RenderFile(json.dumps(kind.tags, indent=2, sort_keys=True) + "\n")
        written = written_files(kind.user_data)
        file_counts[kind.name] = len(written)
        for file in written:
            files[f"{kind.name}/files/{file.path.lstrip('/')}"] = RenderFile(file.content, int(file.permissions, 8))
    blobs = _Blobs(render.kinds)
    # Registration order varies from run to run (it is async): sorted, so two renders diff cleanly.
    ordered = sorted(render.resources, key=lambda r: r.key)
    inputs = {r.key: _public_inputs(r, blobs) for r in ordered}
    files |= blobs.files
    files[MARKER] = RenderFile(resource_table(render, inputs, file_counts))
    recorded = {r.key: {"parent": r.parent, "protected": r.protected, "inputs": inputs[r.key]} for r in ordered}
    document = {"stack": render.stack, "resources": recorded}
    files[RESOURCES_JSON] = RenderFile(json.dumps(document, indent=1, sort_keys=True, default=str) + "\n")
    return files


def write_render(render: StackRender, out: Path) -> list[Path]:
    files = render_files(render)
    replace_directory(out, files)
    return [out / path for path in sorted(files)]


def refuse_unless_replaceable(out: Path) -> None:
    """Stops unless `out` is missing, empty or a previous render: a user's other directory is
    never replaced."""
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SystemExit(f"offline_render: --out {out}: not empty and not a render (no {MARKER}); pick another")


def replace_directory(out: Path, files: dict[str, RenderFile]) -> None:
    """Writes the files into a new directory beside `out`, then swaps it in for `out`: a reader
    sees the old render or the new one, never a mix, and nothing of the old one stays behind (a
    machine kind or a policy that went away). Refuses a non-empty directory that is no render."""
    refuse_unless_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    retired = None
    try:
        staging.chmod(0o755)
        for relative, file in files.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            os.chmod(target, file.mode)
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, retired)  # onto the empty directory mkdtemp made
        try:
            os.rename(staging, out)
        except OSError:
            if retired is not None:
                os.rename(retired, out)
                retired = None
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
