"""`pytest` fails on lint or type errors: scripts/lint.sh runs here, and each of its tools is shown
to reject a known-bad file with the repository's own configuration (so a check cannot pass by
being disabled or misconfigured)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests import REPO_ROOT

BIN = REPO_ROOT / ".venv" / "bin"


def run(*command: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_lint_script_passes() -> None:
    result = run("bash", REPO_ROOT / "scripts" / "lint.sh")
    hint = "\nformatting and safe fixes: bash scripts/lint.sh --fix"
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:] + hint


def test_ruff_rejects_an_unused_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = run(BIN / "ruff", "check", "--no-fix", "--config", REPO_ROOT / "ruff.toml", bad)
    assert result.returncode == 1 and "F401" in result.stdout


def test_ruff_format_rejects_unformatted_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = {'a':1}\n")
    result = run(BIN / "ruff", "format", "--check", "--config", REPO_ROOT / "ruff.toml", bad)
    assert result.returncode == 1


def test_mypy_is_strict_on_components(tmp_path: Path) -> None:
    # A copy of the config and an untyped function in a components/ module of a scratch project.
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "__init__.py").write_text("")
    (tmp_path / "components" / "loose.py").write_text("def untyped(x):\n    return x\n")
    shutil.copy(REPO_ROOT / "mypy.ini", tmp_path / "mypy.ini")
    result = run(BIN / "mypy", "--no-incremental", cwd=tmp_path)
    assert result.returncode == 1 and "no-untyped-def" in result.stdout, result.stdout


def test_shellcheck_rejects_an_unquoted_variable(tmp_path: Path) -> None:
    assert shutil.which("shellcheck"), "shellcheck missing: run bash scripts/setup.sh"
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")
    result = run("shellcheck", bad)
    assert result.returncode != 0 and "SC2086" in result.stdout
