"""The machine scripts as they go onto a machine: the files in userdata/files/ without their
comments and docstrings, reformatted by python-minifier without their annotations, and kept in
userdata/shipped/ (generated, committed). EC2 takes 16 KiB of (gzipped) user-data, and the
scripts' explanations, annotations and indentation were most of it; the sources stay in the
repository, where people read them and mypy checks them.

Committed rather than made at each render: the bytes a stack ships must not depend on the Python
or the python-minifier that renders it (a different byte is a new launch template version, and
every instance is replaced), and the program need not carry python-minifier at all.

    python -m userdata.shipped            rewrite userdata/shipped/ from userdata/files/
    python -m userdata.shipped --check    exit 1, naming the stale files, if any is out of date

Only whole comments and docstrings are cut here, by the tokenizer's and the parser's positions
(the module docstring keeps its first line: --help prints it); python-minifier then drops the
annotations (class attributes keep theirs: dataclasses need them) and rewrites the layout,
nothing else (no renaming, no hoisting): the same program, which the tests check on the syntax
trees, with the names a traceback on a machine shows.
"""

from __future__ import annotations

import argparse
import ast
import functools
import io
import sys
import tokenize
from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"
SHIPPED = Path(__file__).resolve().parent / "shipped"


@functools.cache
def shipped_script(name: str) -> str:
    """userdata/files/<name> as written onto machines (its committed, generated form)."""
    return (SHIPPED / name).read_text()


def generated(name: str) -> str:
    """What userdata/shipped/<name> must hold: the source without comments and docstrings,
    minified. python-minifier is imported here only: the render reads the committed files."""
    import python_minifier

    # Every transformation python-minifier offers is named: only the annotations go, and the layout.
    minified = python_minifier.minify(
        without_explanations(name),
        remove_annotations=True,
        remove_pass=False,
        remove_literal_statements=False,
        combine_imports=False,
        hoist_literals=False,
        rename_locals=False,
        rename_globals=False,
        remove_object_base=False,
        convert_posargs_to_args=False,
        preserve_shebang=True,
        remove_asserts=False,
        remove_debug=False,
        remove_explicit_return_none=False,
        remove_builtin_exception_brackets=False,
        constant_folding=False,
    )
    # It indents with tabs; YAML writes a text holding a tab as one escaped line, so a space per
    # level instead (the tree must stay the same: a tab inside a string would change it).
    spaced = "".join(_spaces_for_tabs(line) for line in minified.splitlines(keepends=True))
    if ast.dump(ast.parse(spaced)) != ast.dump(ast.parse(minified)):
        raise ValueError(f"{name}: re-indenting changed the program")
    return spaced


def _spaces_for_tabs(line: str) -> str:
    body = line.lstrip("\t")
    return " " * (len(line) - len(body)) + body


def without_explanations(name: str) -> str:
    """userdata/files/<name> without its comments and docstrings (the module's first line stays)."""
    source = (FILES / name).read_text()
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    dropped: set[int] = set()  # 0-based line numbers removed whole
    for first, last in _body_docstring_lines(tree):
        dropped.update(range(first - 1, last))
    if ast.get_docstring(tree, clean=False) is not None:
        # The module docstring keeps its first line (the usage line app-release's --help
        # prints), which then closes the string itself.
        docstring = tree.body[0]
        if docstring.end_lineno != docstring.lineno:
            opening = lines[docstring.lineno - 1]
            lines[docstring.lineno - 1] = opening.rstrip("\n") + opening.lstrip()[:3] + "\n"
            dropped.update(range(docstring.lineno, docstring.end_lineno or docstring.lineno))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        (row, column), index = token.start, token.start[0] - 1
        if token.type != tokenize.COMMENT or row == 1:  # the shebang stays
            continue
        kept = lines[index][:column].rstrip()
        if kept:
            lines[index] = kept + "\n"
        else:
            dropped.add(index)
    return "".join(line for index, line in enumerate(lines) if index not in dropped)


def _body_docstring_lines(tree: ast.Module) -> list[tuple[int, int]]:
    """(first, last) line, 1-based, of every function's and class's docstring, except one that is
    its body's only statement (the body would be empty)."""
    spans = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if ast.get_docstring(node, clean=False) is None or len(node.body) < 2:
            continue
        docstring = node.body[0]
        spans.append((docstring.lineno, docstring.end_lineno or docstring.lineno))
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m userdata.shipped", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    check = parser.parse_args(argv).check
    names = sorted(path.name for path in FILES.iterdir())
    stale = [
        name for name in names if not (SHIPPED / name).is_file() or (SHIPPED / name).read_text() != generated(name)
    ]
    orphans = sorted(path.name for path in SHIPPED.iterdir() if path.name not in names) if SHIPPED.is_dir() else []
    if check:
        for name in stale + orphans:
            print(f"userdata/shipped/{name}: out of date; run python -m userdata.shipped", file=sys.stderr)
        return 1 if stale or orphans else 0
    SHIPPED.mkdir(exist_ok=True)
    for name in stale:
        (SHIPPED / name).write_text(generated(name))
    for name in orphans:
        (SHIPPED / name).unlink()
    print(f"userdata/shipped: {len(stale)} rewritten, {len(orphans)} removed, {len(names)} in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
