"""The guardrails lane fails on lint or type errors: scripts/lint.sh runs here, and each of its tools is shown
to reject a known-bad file with the repository's own configuration (so a check cannot pass by
being disabled or misconfigured)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
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
    result = run(BIN / "ruff", "check", "--no-fix", "--config", REPO_ROOT / "pyproject.toml", bad)
    assert result.returncode == 1 and "F401" in result.stdout


def test_ruff_format_rejects_unformatted_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = {'a':1}\n")
    result = run(BIN / "ruff", "format", "--check", "--config", REPO_ROOT / "pyproject.toml", bad)
    assert result.returncode == 1


PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# Everything that runs in production or operations (the offline render included).
PRODUCTION_CODE = {
    "__main__.py",
    "program.py",
    "config",
    "release_name.py",
    "aws_limits.py",
    "components",
    "userdata",
    "ops",
    "policy",
    "offline_render",
}


def test_mypy_covers_everything_that_runs_in_production_or_operations() -> None:
    assert set(PYPROJECT["tool"]["mypy"]["files"]) == PRODUCTION_CODE
    assert PYPROJECT["tool"]["mypy"]["strict"] is True
    # The machine scripts are checked one by one (each is a `__main__` to mypy).
    assert (
        'for script in userdata/files/*; do\n  check "$bin/mypy" "$script"'
        in (REPO_ROOT / "scripts/lint.sh").read_text()
    )


def test_mypy_is_strict_on_every_configured_path(tmp_path: Path) -> None:
    # A scratch project with the repository's pyproject.toml and an untyped function in each path
    # it lists: every one must be reported, so no path is checked loosely.
    untyped = "def untyped(x):\n    return x\n"
    for entry in PRODUCTION_CODE:
        if entry.endswith(".py"):
            (tmp_path / entry).write_text(untyped)
        else:
            (tmp_path / entry).mkdir()
            (tmp_path / entry / "__init__.py").write_text("")
            (tmp_path / entry / "loose.py").write_text(untyped)
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = run(BIN / "mypy", "--no-incremental", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    reported = {line.split(":", 1)[0] for line in result.stdout.splitlines() if "[no-untyped-def]" in line}
    expected = {e if e.endswith(".py") else f"{e}/loose.py" for e in PRODUCTION_CODE}
    assert reported == expected, result.stdout


def test_shellcheck_rejects_an_unquoted_variable(tmp_path: Path) -> None:
    assert shutil.which("shellcheck"), "shellcheck missing: run bash scripts/setup.sh guardrails"
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")
    result = run("shellcheck", bad)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_shellcheck_reads_every_rendered_remote_script_and_rejects_a_bad_one(tmp_path: Path) -> None:
    # lint.sh checks the ops tool's remote scripts as SSM runs them: rendered, read as POSIX sh.
    lint = (REPO_ROOT / "scripts/lint.sh").read_text()
    command = 'check shellcheck --shell=sh --exclude=SC1091,SC2317 "$remote"/*.sh'
    assert '-m ops.scripts --render-all "$remote"' in lint and command in lint
    assert run(BIN / "python", "-m", "ops.scripts", "--render-all", tmp_path).returncode == 0
    rendered = sorted(tmp_path.glob("*.sh"))
    assert {"verify-web.sh", "verify-worker.sh", "switch-release-worker.sh"} <= {p.name for p in rendered}
    flags = ["--shell=sh", "--exclude=SC1091,SC2317"]
    assert run("shellcheck", *flags, *rendered).returncode == 0
    (tmp_path / "verify-web.sh").write_text((tmp_path / "verify-web.sh").read_text() + "[[ -n $ROLE ]]\n")
    result = run("shellcheck", *flags, tmp_path / "verify-web.sh")
    assert result.returncode != 0 and "SC3010" in result.stdout  # [[ ]] is not POSIX sh
