"""The offline render's files: per instance its user-data and every file that user-data writes,
at its machine path, plus resources.md, a table of every resource with its inputs (secrets
shown as [secret])."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from offline_render.fake_aws import SECRET_SIG, SECRET_SIG_KEY, write_only
from offline_render.program import StackRender
from userdata.render import written_files


def _hide_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return "[secret]"
        # A write-only input's value is made afresh on each run and never stored: not shown.
        return {k: "[write-only]" if write_only(k) else _hide_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secrets(v) for v in value]
    return value


def _public(inputs: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = _hide_secrets(inputs)
    if "userDataBase64" in shown:
        shown["userDataBase64"] = "[gzip+base64 #cloud-config: see <instance>/user-data.yaml]"
    return shown


def resource_table(render: StackRender) -> str:
    lines = [
        f"# Resources of stack `{render.stack}` ({len(render.resources)})",
        "",
        "| type | name | inputs |",
        "|---|---|---|",
    ]
    # Registration order varies from run to run (it is async): sort, so two renders diff cleanly.
    for r in sorted(render.resources, key=lambda r: (r.type_, r.name)):
        inputs = json.dumps(_public(r.inputs), sort_keys=True, default=str).replace("|", "\\|")
        lines.append(f"| `{r.type_}` | `{r.name}` | `{inputs}` |")
    return "\n".join(lines) + "\n"


def write_render(render: StackRender, out: Path) -> list[Path]:

    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for instance in render.instances:
        base = out / instance.logical_name
        (base / "files").mkdir(parents=True, exist_ok=True)
        (base / "user-data.yaml").write_text(instance.user_data)
        (base / "tags.json").write_text(json.dumps(instance.tags, indent=2, sort_keys=True) + "\n")
        written += [base / "user-data.yaml", base / "tags.json"]
        for file in written_files(instance.user_data):
            target = base / "files" / file.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            os.chmod(target, int(file.permissions, 8))
            written.append(target)
    (out / "resources.md").write_text(resource_table(render))
    written.append(out / "resources.md")
    return written
