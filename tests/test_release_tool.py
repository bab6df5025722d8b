"""app-release without AWS: refuse bad input and hostile artifacts,
and leave a tree the app user can read whatever the unit's umask (the first-boot bug of issue 9).
The real script, run by Debian's python under the units' umask; no root, no network."""

from __future__ import annotations

import stat

from tests.machine_scripts import artifact, release_tool, unreadable_for_others


def test_release_tree_is_readable_by_the_app_user_under_the_units_umask(tmp_path):
    root = tmp_path / "srv-app"  # created by app-release itself, as at first boot
    installed = release_tool(root, "install", "r1", "--artifact", str(artifact(tmp_path, "r1")))
    assert installed.returncode == 0, installed.stderr
    assert release_tool(root, "activate", "r1").returncode == 0
    assert unreadable_for_others(root) == []
    current = root / "current"
    assert stat.S_IMODE((current / "venv" / "bin" / "pip").stat().st_mode) == 0o755  # a script pip wrote
    assert stat.S_IMODE((current / "src" / "manage.py").stat().st_mode) == 0o644


def test_release_refuses_bad_input_and_hostile_artifacts(tmp_path):
    root = tmp_path / "srv-app"
    unknown = release_tool(root, "activate", "r9")
    assert unknown.returncode == 1 and "release r9 is not installed; installed: none" in unknown.stderr
    bad_name = release_tool(root, "install", "../etc", "--artifact", "/dev/null")
    assert bad_name.returncode == 1 and "invalid release name '../etc'" in bad_name.stderr
    escape = artifact(tmp_path, "evil", {"../../escaped": b"x"})
    refused = release_tool(root, "install", "evil", "--artifact", str(escape))
    assert refused.returncode == 1 and "escapes the release directory" in refused.stderr
    assert not (tmp_path / "escaped").exists()
    assert release_tool(root, "list").stdout.split() == []
