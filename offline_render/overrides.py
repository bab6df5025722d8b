"""Config overrides on top of a stack file: what the tests and harnesses vary per run."""

from __future__ import annotations

import copy
from typing import Any

from ops.stack import program_project


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], project: str | None = None) -> dict[str, Any]:
    """Sets dotted paths (`web.desiredCapacity`, `redis.caCertFile`, `aws:region`) in a copy of the
    config, the project's own keys under its name (`<project>:web`; default: Pulumi.yaml's)."""
    project = project or program_project()
    merged = copy.deepcopy(config)
    for path, value in overrides.items():
        if ":" in path:
            merged[path] = value
            continue
        top, *rest = path.split(".")
        node = merged.setdefault(f"{project}:{top}", {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if rest:
            node[rest[-1]] = value
        else:
            merged[f"{project}:{top}"] = value
    return merged
