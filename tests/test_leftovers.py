"""What the test runs sweep: the trees of runs that were killed, and what the e2e units' app user
left in the host's /tmp (tests/e2e/e2e_harness/leftovers.py)."""

from __future__ import annotations

import os
import signal
import subprocess

from e2e_harness.leftovers import entries_owned_by, remove_dead_runs, trees_of_dead_runs


def test_only_what_the_given_uid_owns_is_listed(tmp_path):
    (tmp_path / "pymp-abc").mkdir()
    (tmp_path / "a-file").write_text("")
    mine = os.getuid()
    assert sorted(p.name for p in entries_owned_by(mine, str(tmp_path))) == ["a-file", "pymp-abc"]
    assert entries_owned_by(mine + 1, str(tmp_path)) == []


def test_a_tree_is_a_dead_runs_only_when_its_pid_is_gone(tmp_path):
    gone = 2**22 + 1  # above pid_max's largest value: no such process
    (tmp_path / f"e2e-{gone}-x").mkdir()
    (tmp_path / f"e2e-{os.getpid()}-y").mkdir()
    (tmp_path / "e2e-notapid-z").mkdir()
    assert [p.name for p in trees_of_dead_runs("e2e-", str(tmp_path))] == [f"e2e-{gone}-x"]


def test_a_dead_runs_tree_goes_with_what_still_holds_it_and_a_live_runs_stays(tmp_path):
    gone = 2**22 + 1
    dead, live = tmp_path / f"run-{gone}-x", tmp_path / f"run-{os.getpid()}-y"
    for tree in (dead, live):
        (tree / "log").mkdir(parents=True)
    # What a killed run leaves running: a daemon working in its tree, one with a file open there.
    in_dead = subprocess.Popen(["sleep", "60"], cwd=dead / "log")
    with (dead / "log" / "out").open("w") as log:
        logging_to_dead = subprocess.Popen(["sleep", "60"], stdout=log)
    in_live = subprocess.Popen(["sleep", "60"], cwd=live)
    try:
        assert remove_dead_runs("run-", str(tmp_path)) == [dead]
        assert in_dead.wait(timeout=10) == -signal.SIGKILL
        assert logging_to_dead.wait(timeout=10) == -signal.SIGKILL
        assert not dead.exists()
        assert live.is_dir() and in_live.poll() is None
    finally:
        for process in (in_dead, logging_to_dead, in_live):
            process.kill()
            process.wait()
