"""A killed e2e session leaves its tree and daemons behind; the next session's start removes them
(tests/e2e/conftest.py) and leaves a live session's alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_harness.deployment import BASE_PREFIX, Deployment, make_base, sweep_killed_runs
from e2e_harness.leftovers import entries_owned_by
from e2e_harness.machine import APP_UID
from pulumi.errors import RunError

from tests.e2e.conftest import remove_what_the_app_user_left


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    assert not Path(f"/proc/{process.pid}").exists()
    return process.pid


def holder(tree: Path, **how) -> subprocess.Popen:
    """A daemon of the run that made `tree`: it logs into it, or runs from it."""
    return subprocess.Popen(["sleep", "300"], start_new_session=True, **how)


def test_a_killed_runs_tree_and_daemons_are_removed_and_a_live_runs_stay() -> None:
    killed = Path(f"/tmp/{BASE_PREFIX}{dead_pid()}-sweep")
    killed.mkdir()
    live = make_base()
    with (killed / "daemon.log").open("wb") as log, (live / "daemon.log").open("wb") as live_log:
        logging_daemon = holder(killed, stdout=log)
        resident_daemon = holder(killed, cwd=killed)
        live_daemon = holder(live, stdout=live_log)
    try:
        sweep_killed_runs()
        assert logging_daemon.wait(timeout=10) == -9
        assert resident_daemon.wait(timeout=10) == -9
        assert not killed.exists()
        assert live_daemon.poll() is None
        assert (live / "daemon.log").exists()
    finally:
        for daemon in (logging_daemon, resident_daemon, live_daemon):
            daemon.kill()
            daemon.wait()
        shutil.rmtree(killed, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)


def test_a_deployment_whose_stack_does_not_render_leaves_no_tree() -> None:
    own_trees = f"{BASE_PREFIX}{os.getpid()}-*"
    before = set(Path("/tmp").glob(own_trees))
    with pytest.raises(RunError, match=r"web\.port: got .not a port."):
        Deployment.create(config={"web.port": "not a port"})
    assert set(Path("/tmp").glob(own_trees)) == before


def test_what_the_units_app_user_left_in_tmp_is_removed_and_nothing_else(tmp_path) -> None:
    """Celery's prefork pool leaves `pymp-*` directories in /tmp when its worker is killed
    (production's PrivateTmp= removes them with the unit); the lane removes what the harness's
    app user owns there, before its first test and after its last. Shown on a directory of the
    test's own: the session's running stack has its workers' live ones in /tmp."""
    left = tmp_path / "pymp-left"
    (left / "inside").mkdir(parents=True)
    for path in (left, left / "inside"):
        os.chown(path, APP_UID, APP_UID)
    left_file = tmp_path / "a-file-left"
    left_file.write_text("")
    os.chown(left_file, APP_UID, APP_UID)
    someone_elses = tmp_path / "pymp-someone-elses"
    someone_elses.mkdir()
    assert sorted(entries_owned_by(APP_UID, str(tmp_path))) == [left_file, left]
    remove_what_the_app_user_left(str(tmp_path))
    assert sorted(tmp_path.iterdir()) == [someone_elses]
