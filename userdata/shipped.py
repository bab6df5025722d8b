"""The machine scripts as they go onto a machine: the files in userdata/files/ without their
comments and docstrings. EC2 takes 16 KiB of (gzipped) user-data and the scripts' explanations
were most of it; they stay in the repository, where people read them. Only whole comments and
docstrings are cut, by the tokenizer's and the parser's positions: every other byte is the
source's own, so the result is the same program (tests compare the syntax trees) and the same
text whatever Python renders it.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from pathlib import Path

FILES = Path(__file__).resolve().parent / "files"


@functools.cache
def shipped_script(name: str) -> str:
    """userdata/files/<name> as written onto machines."""
    source = (FILES / name).read_text()
    lines = source.splitlines(keepends=True)
    dropped: set[int] = set()  # 0-based line numbers removed whole
    for first, last in _docstring_lines(source):
        dropped.update(range(first - 1, last))
    module = ast.parse(source).body[0]
    if ast.get_docstring(ast.parse(source), clean=False) is not None and module.end_lineno != module.lineno:
        # The module docstring keeps its first line (the usage line app-release's --help
        # prints): that line now closes the string itself.
        opening = lines[module.lineno - 1]
        lines[module.lineno - 1] = opening.rstrip("\n") + opening.lstrip()[:3] + "\n"
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


def _docstring_lines(source: str) -> list[tuple[int, int]]:
    """(first, last) line of every docstring that can go, 1-based: all of a function's or
    class's (unless it is the body's only statement), all but the first line of the module's."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if ast.get_docstring(node, clean=False) is None:
            continue
        docstring = node.body[0]
        first, last = docstring.lineno, docstring.end_lineno or docstring.lineno
        if isinstance(node, ast.Module):
            first += 1
        elif len(node.body) < 2:
            continue
        if first <= last:
            spans.append((first, last))
    return spans
