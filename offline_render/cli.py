"""python -m offline_render: render a stack offline and write the files for review; with
--compare, also say what changed against a previous render."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pulumi

import offline_render
from offline_render.compare import RevisionRender, compare, read_snapshot, snapshot_of
from offline_render.program import PROGRAM_DIR, render_stack
from offline_render.report import RenderFile, refuse_unless_replaceable, render_files, replace_directory


def main(argv: list[str] | None = None) -> int:
    description = (offline_render.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m offline_render", description=description)
    parser.add_argument("--stack", default="prod", help="stack name: a Pulumi.<stack>.yaml must exist")
    parser.add_argument("--out", type=Path, default=None, help="output directory, replaced (default: build/<stack>)")
    parser.add_argument(
        "--compare",
        metavar="RENDER_OR_REVISION",
        help="also print what changed against a previous render: its directory, or a git revision (main, HEAD~1)",
    )
    # A git revision's copy of the program, rendered by this checkout's offline_render (--compare).
    parser.add_argument("--program", type=Path, default=PROGRAM_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.program != PROGRAM_DIR:
        use_program(args.program)
    out = args.out or PROGRAM_DIR / "build" / args.stack
    refuse_unless_replaceable(out)  # before the render: a wrong --out costs no wait
    if not args.compare:
        return 0 if render_and_write(args.stack, args.program, out) is not None else 2
    if Path(args.compare).is_dir():
        previous = read_snapshot(Path(args.compare))  # before writing: it may be the output directory itself
        written = render_and_write(args.stack, args.program, out)
    else:
        revision = RevisionRender(args.compare, args.stack)
        try:
            revision.start()  # in the background, while this process renders the working tree
            written = render_and_write(args.stack, args.program, out)
            previous = revision.snapshot()
        finally:
            revision.close()
    if written is None:
        return 2
    print(compare(previous, snapshot_of(written)).summary(args.compare), end="")
    return 0


def render_and_write(stack: str, program: Path, out: Path) -> dict[str, RenderFile] | None:
    """Renders the stack and replaces `out` with its files; None (and one line) on invalid config."""
    try:
        render = render_stack(stack, program_dir=program)
    except pulumi.RunError as error:
        print(f"offline_render: {error}", file=sys.stderr)
        return None
    files = render_files(render)
    replace_directory(out, files)
    kinds = ", ".join(f"{k.name} ({k.role}, {k.capacity} instances)" for k in render.kinds)
    print(f"stack {stack}: {len(render.resources)} resources; machines: {kinds}")
    print(f"wrote {out}: resources.md, resources.json, one directory per machine kind, policies/, documents/")
    return files


def use_program(directory: Path) -> None:
    """Imports `program`, `config`, `components`, `userdata`... from that copy of the program instead of
    this checkout (offline_render itself stays this checkout's: the files are written one way)."""
    for name in list(sys.modules):
        top = name.split(".")[0]
        if top in ("offline_render", "__main__"):
            continue
        if (PROGRAM_DIR / top / "__init__.py").is_file() or (PROGRAM_DIR / f"{top}.py").is_file():
            del sys.modules[name]
    sys.path.insert(0, str(directory.resolve()))
