"""python -m offline_render: render a stack offline and write the files for review."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pulumi

import offline_render
from offline_render.program import PROGRAM_DIR, render_stack
from offline_render.report import write_render


def main(argv: list[str] | None = None) -> int:
    description = (offline_render.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m offline_render", description=description)
    parser.add_argument("--stack", default="prod", help="stack name: a Pulumi.<stack>.yaml must exist")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: build/<stack>)")
    args = parser.parse_args(argv)
    try:
        render = render_stack(args.stack)
    except pulumi.RunError as error:
        print(f"offline_render: {error}", file=sys.stderr)
        return 2
    out = args.out or PROGRAM_DIR / "build" / args.stack
    write_render(render, out)
    roles = ", ".join(f"{i.logical_name} ({i.role})" for i in render.instances)
    print(f"stack {args.stack}: {len(render.resources)} resources, {len(render.instances)} instances: {roles}")
    print(f"wrote {out}/resources.md and one directory per instance")
    return 0
