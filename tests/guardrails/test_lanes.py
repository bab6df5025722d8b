"""The test lanes: every test is in exactly one, by its directory; the markers, scripts/test.sh and
the CI jobs name the same lanes; a test outside every lane stops the run."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

from tests import REPO_ROOT
from tests.conftest import LANES, RUN_TREES, TESTS, lane_of

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def registered_markers() -> set[str]:
    return {marker.split(":", 1)[0] for marker in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}


def test_the_lanes_are_the_registered_markers_and_strict() -> None:
    assert set(LANES.values()) == registered_markers() == {"unit", "e2e", "vm", "guardrails"}
    assert "--strict-markers" in PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"]


def test_every_test_file_lives_in_a_lane() -> None:
    test_files = sorted(TESTS.rglob("test_*.py"))
    assert test_files
    assert [path for path in test_files if lane_of(path) is None] == []
    assert lane_of(TESTS / "test_fleet.py") == "unit"
    assert lane_of(TESTS / "guardrails" / "test_lanes.py") == "guardrails"
    assert lane_of(TESTS / "ops" / "test_rollout.py") == "unit"
    assert lane_of(TESTS / "e2e" / "test_faults.py") == "e2e"


def test_the_test_command_and_ci_run_the_same_lanes() -> None:
    script = (REPO_ROOT / "scripts" / "test.sh").read_text()
    cases = re.findall(r"^  (.+)\) selection=\(-m \"\$lane\"(?: -n auto --dist loadgroup)?\) ;;$", script, flags=re.M)
    assert cases, "scripts/test.sh has no lane case"
    assert {lane for case in cases for lane in case.split(" | ")} == registered_markers()
    jobs = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "tests.yml").read_text())["jobs"]
    lanes = {entry["lane"] for entry in jobs["lane"]["strategy"]["matrix"]["include"]}
    assert lanes == registered_markers()
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith("exec bash scripts/test.sh")


def test_a_test_outside_every_lane_fails_collection(tmp_path: Path) -> None:
    # The repository's conftest in a scratch tests/ with a directory no lane claims.
    (tmp_path / "tests" / "misc").mkdir(parents=True)
    shutil.copy(TESTS / "conftest.py", tmp_path / "tests" / "conftest.py")
    shutil.copy(TESTS / "__init__.py", tmp_path / "tests" / "__init__.py")
    (tmp_path / "tests" / "misc" / "test_stray.py").write_text("def test_stray():\n    assert True\n")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr  # 4: usage error, nothing ran
    assert "tests outside every lane" in result.stderr and "test_stray.py" in result.stderr, result.stderr


def test_sessions_keep_their_temp_trees_to_themselves_and_leave_none(tmp_path: Path) -> None:
    """A killed session's trees, and a killed test.sh run's temp dir, go at the next start; a
    session's trees outlive another session that starts and ends beside it; an ended session
    leaves nothing."""
    # The repository's conftest and pytest settings in a scratch project; every tree under TMPDIR.
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name in ("__init__.py", "conftest.py"):
        shutil.copy(TESTS / name, tmp_path / "tests" / name)
    temp, ready, go = tmp_path / "temp", tmp_path / "ready", tmp_path / "go"
    temp.mkdir()
    env = {"TMPDIR": str(temp), "PATH": "/usr/bin:/bin"}

    def command(name: str, body: str) -> list[str]:
        """pytest running tests/test_<name>.py alone: one test that writes to its tmp_path, then `body`."""
        test = tmp_path / "tests" / f"test_{name}.py"
        test.write_text(
            "import os, signal, time\nfrom pathlib import Path\n\n"
            f"def test_writes(tmp_path):\n    (tmp_path / 'f').write_text('x')\n{body}"
        )
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(test)]

    def session(name: str, body: str) -> subprocess.CompletedProcess:
        return subprocess.run(command(name, body), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    def trees() -> list[str]:
        return sorted(path.name for path in temp.iterdir())

    # What a killed `scripts/test.sh` left in the host's /tmp: its TMPDIR, named by its pid (gone).
    dead_run = Path(f"/tmp/{RUN_TREES}{2**22 + 1}-{tmp_path.name}")
    (dead_run / "pip-left").mkdir(parents=True)
    killed = session("killed", "    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert trees(), "the killed session left no tree: this test shows nothing"
    assert not dead_run.exists(), "a session's start left a killed run's temp dir"
    # Holds its tree while another session runs from start to end, then checks it is still there.
    holding_test = (
        f"    Path({str(ready)!r}).touch()\n"
        f"    deadline = time.monotonic() + 60\n"
        f"    while not Path({str(go)!r}).exists() and time.monotonic() < deadline:\n"
        f"        time.sleep(0.05)\n"
        f"    assert (tmp_path / 'f').read_text() == 'x'\n"
    )
    holding = subprocess.Popen(
        command("holding", holding_test), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and holding.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holding session never started its test"
        beside = session("beside", "")
        assert beside.returncode == 0, beside.stdout + beside.stderr
    finally:
        go.touch()
        output = holding.communicate(timeout=120)[0].decode()
    assert holding.returncode == 0, output
    assert trees() == []
