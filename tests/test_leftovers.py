"""What the test runs sweep: the trees of runs that were killed, and what the e2e units' app user
left in the host's /tmp (tests/e2e/e2e_harness/leftovers.py)."""

from __future__ import annotations

import os

from e2e_harness.leftovers import entries_owned_by, trees_of_dead_runs


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
