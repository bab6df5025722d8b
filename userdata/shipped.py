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
