"""app-release without AWS: refuse bad input and hostile artifacts,
and leave a tree the app user can read whatever the unit's umask (the first-boot bug of issue 9).
The real script, run by Debian's python under the units' umask; no root, no network."""

from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path

import pytest

from tests.machine_scripts import artifact, release_tool, unreadable_for_others, write_checksum

# One xdist worker runs them all (scripts/test.sh: --dist loadgroup): the release they share is made once.
pytestmark = pytest.mark.xdist_group("release-tool")


@pytest.fixture(scope="module")
def r1_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding r1's artifact and srv-app/ with r1 installed and activated by the real
    tool, made once: the venv build is most of these tests' time. Read it; change only a copy."""
    work = tmp_path_factory.mktemp("r1")
    root = work / "srv-app"  # created by app-release itself, as at first boot
    installed = release_tool(root, "install", "r1", "--artifact", str(artifact(work, "r1")))
    assert installed.returncode == 0, installed.stderr
    assert release_tool(root, "activate", "r1").returncode == 0
    return work


def test_release_tree_is_readable_by_the_app_user_under_the_units_umask(r1_installed):
    root = r1_installed / "srv-app"
    assert unreadable_for_others(root) == []
    current = root / "current"
    assert stat.S_IMODE((current / "venv" / "bin" / "hello-release").stat().st_mode) == 0o755  # a script pip wrote
    assert not (current / "venv" / "bin" / "pip").exists()  # pip ran from Debian's wheel, not from the venv
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


def test_release_refuses_an_artifact_that_is_not_the_one_its_checksum_names(r1_installed, tmp_path):
    shutil.copytree(r1_installed, tmp_path, symlinks=True, dirs_exist_ok=True)
    root = tmp_path / "srv-app"
    recorded = (tmp_path / "r1.tar.gz.sha256").read_text().split()[0]
    (tmp_path / "other").mkdir()
    swapped = artifact(tmp_path / "other", "r2", {"src/x.py": b"1"})
    write_checksum(swapped).write_text(f"{recorded}  r2.tar.gz\n")  # the digest of another build
    refused = release_tool(root, "install", "r2", "--artifact", str(swapped))
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert line.startswith("app-release: release r2: artifact sha256 ")
    assert line.endswith(f", its checksum file says {recorded}; not installed")
    assert hashlib.sha256(swapped.read_bytes()).hexdigest() in line
    assert release_tool(root, "list").stdout.split() == ["r1"]
    assert release_tool(root, "current").stdout.strip() == "r1"
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r1"]  # no half-made r2, no scratch


def test_release_refuses_an_artifact_without_its_checksum(tmp_path):
    root = tmp_path / "srv-app"
    unchecked = artifact(tmp_path, "r1")
    Path(f"{unchecked}.sha256").unlink()
    refused = release_tool(root, "install", "r1", "--artifact", str(unchecked))
    assert (refused.returncode, refused.stderr) == (
        1,
        f"app-release: release r1: no checksum {unchecked}.sha256 beside the artifact\n",
    )
    assert release_tool(root, "list").stdout.split() == []
