"""app-release without AWS: refuse bad input and hostile artifacts,
and leave a tree the app user can read whatever the unit's umask (the first-boot bug of issue 9).
The real script, run by Debian's python under the units' umask; no root, no network."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.machine_scripts import (
    HELLO_MODULE,
    artifact,
    release_tool,
    script_literals,
    tiny_wheel,
    unreadable_for_others,
    write_checksum,
)
from userdata import layout

# The tests that read r1_installed run on one xdist worker (scripts/test.sh: --dist loadgroup), so
# its venv is built once; the others (each installing its own releases) go to any worker.
shares_r1 = pytest.mark.xdist_group("release-tool-r1")


@pytest.fixture(scope="module")
def r1_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding r1's artifact and srv-app/ with r1 installed and activated by the real
    tool, made once. Read it; change only a copy."""
    work = tmp_path_factory.mktemp("r1")
    root = work / "srv-app"  # created by app-release itself, as at first boot
    installed = release_tool(root, "install", "r1", "--artifact", str(artifact(work, "r1")))
    assert installed.returncode == 0, installed.stderr
    assert release_tool(root, "activate", "r1").returncode == 0
    return work


@shares_r1
def test_release_tree_is_readable_by_the_app_user_under_the_units_umask(r1_installed):
    root = r1_installed / "srv-app"
    assert unreadable_for_others(root) == []
    current = root / "current"
    assert stat.S_IMODE((current / "venv" / "bin" / "hello-release").stat().st_mode) == 0o755  # a console script
    assert not (current / "venv" / "bin" / "pip").exists()  # the venv gets an interpreter, not pip
    assert stat.S_IMODE((current / "src" / "manage.py").stat().st_mode) == 0o644


@shares_r1
def test_the_shipped_venv_runs_its_console_scripts_through_current_with_its_own_release(r1_installed):
    """The venv the builder ships gets its interpreter at install: a unit's command line
    (current/venv/bin/SCRIPT) runs the script with the venv's python and packages."""
    current = r1_installed / "srv-app" / "current"
    ran = subprocess.run(
        [str(current / "venv" / "bin" / "hello-release")], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert (ran.returncode, ran.stdout) == (0, "hello\n"), ran.stderr
    where = subprocess.run(
        [str(current / "venv" / "bin" / "python"), "-c", "import sys, hello_release; print(sys.prefix)"],
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(current / "venv"), where.stderr


def test_an_artifact_of_the_older_builder_still_installs_with_pip_at_install(tmp_path):
    """Its wheels/ are installed as before (instances launched after an upgrade install the live
    release the older builder made): the same tree, no wheels/ left."""
    root = tmp_path / "srv-app"
    done = release_tool(root, "install", "r1", "--artifact", str(artifact(tmp_path, "r1", legacy=True)))
    assert done.returncode == 0, done.stderr
    assert release_tool(root, "activate", "r1").returncode == 0
    ran = subprocess.run([str(root / "current" / "venv" / "bin" / "hello-release")], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "hello\n"), ran.stderr
    assert not (root / "releases" / "r1" / "wheels").exists()
    assert unreadable_for_others(root) == []


def test_release_refuses_bad_input_and_hostile_artifacts(tmp_path):
    root = tmp_path / "srv-app"
    unknown = release_tool(root, "activate", "r9")
    assert unknown.returncode == 1 and "release r9 is not installed; installed: none" in unknown.stderr
    bad_name = release_tool(root, "install", "../etc", "--artifact", "/dev/null")
    assert bad_name.returncode == 1 and "invalid release name '../etc'" in bad_name.stderr
    escape = artifact(tmp_path, "evil", {"../../escaped": b"x"})
    refused = release_tool(root, "install", "evil", "--artifact", str(escape))
    assert refused.returncode == 1 and "tar: Removing leading `../../' from member names" in refused.stderr
    assert not (tmp_path / "escaped").exists()
    assert release_tool(root, "list").stdout.split() == []


@shares_r1
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
    assert line.endswith(f", expected {recorded}; not installed")
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


# The marker app-release writes last into an installed release (what `list` looks for).
COMPLETE = script_literals("app-release", "COMPLETE")["COMPLETE"]


def refused_beside_r1(r1_installed: Path, tmp_path: Path, refused_artifact: Path) -> str:
    """Installs refused_artifact as r2 next to an active r1; the one stderr line, after checking
    that nothing was installed and `current` did not move."""
    shutil.copytree(r1_installed, tmp_path / "host", symlinks=True, dirs_exist_ok=True)
    root = tmp_path / "host" / "srv-app"
    refused = release_tool(root, "install", "r2", "--artifact", str(refused_artifact))
    assert refused.returncode == 1, refused.stdout
    # What `list` and `current` read (the tests above run them), read here: two interpreters
    # fewer for each of the many artifacts refused.
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["r1"]  # nothing unpacked
    assert (root / "releases" / "r1" / COMPLETE).is_file()
    assert os.readlink(root / "current") == "releases/r1"
    (line,) = refused.stderr.splitlines()
    return line


@shares_r1
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"architecture": "sparc"}, "app-release: release r2 is built for sparc, this instance is "),
        (
            {"python": "3.13"},
            "app-release: release r2 is built for Python 3.13, this instance runs 3.11; not installed",
        ),
        ({"release": "r7"}, "app-release: release r2: the artifact's manifest.json is for release 'r7'; not installed"),
    ],
)
def test_release_refuses_an_artifact_built_for_another_machine_python_or_release(
    r1_installed, tmp_path, overrides, expected
):
    (tmp_path / "build").mkdir()
    line = refused_beside_r1(r1_installed, tmp_path, artifact(tmp_path / "build", "r2", manifest_overrides=overrides))
    assert line.startswith(expected)


@shares_r1
def test_release_refuses_an_artifact_without_a_manifest(r1_installed, tmp_path):
    (tmp_path / "build").mkdir()
    unlisted = artifact(tmp_path / "build", "r2", {"manifest.json": b"[]"})
    line = refused_beside_r1(r1_installed, tmp_path, unlisted)
    assert line == "app-release: release r2: the artifact's manifest.json has no wheels mapping of file name -> sha256"


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


def with_members(directory: Path, release: str, *members: tarfile.TarInfo, unreadable_header: bool = False) -> Path:
    """The builder's artifact with these members after its own; with unreadable_header, behind
    a 512-byte block that is no tar header (Python's tarfile stops there, GNU tar skips it)."""
    built = artifact(directory, release)
    plain = io.BytesIO(gzip.decompress(built.read_bytes()))
    with tarfile.open(fileobj=plain) as archive:
        archive.getmembers()  # read up to the end-of-archive block
        end = archive.offset
    body = plain.getvalue()[:end] + (b"\xff" * tarfile.BLOCKSIZE if unreadable_header else b"")
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(b"x" * info.size))
    built.write_bytes(gzip.compress(body + extra.getvalue(), mtime=0))
    write_checksum(built)
    return built


REFUSED = "app-release: artifact member is not a regular file (0644/0755) or directory (0755): "
NOT_UNPACKED = "app-release: artifact not unpacked: tar: "


@shares_r1
@pytest.mark.parametrize(
    ("hostile", "starts", "ends"),
    [
        # The member's line as `tar -vv` lists it: type and permissions first, its name last.
        (member("src/link", tarfile.SYMTYPE, link="/etc"), REFUSED + "lrw-r--r-- ", " src/link -> /etc"),
        (
            member("src/hard", tarfile.LNKTYPE, link="src/manage.py"),
            REFUSED + "hrw-r--r-- ",
            " src/hard link to src/manage.py",
        ),
        (member("src/null", tarfile.CHRTYPE), REFUSED + "crw-r--r-- ", " src/null"),
        (member("src/pipe", tarfile.FIFOTYPE), REFUSED + "prw-r--r-- ", " src/pipe"),
        (member("src/secret.py", mode=0o600), REFUSED + "-rw------- ", " src/secret.py"),
        (member("src/private", tarfile.DIRTYPE, mode=0o700), REFUSED + "drwx------ ", " src/private/"),
        (member("src/setuid", mode=0o4755), REFUSED + "-rwsr-xr-x ", " src/setuid"),
        # GNU tar keeps these inside the tree and says so: any word from tar fails the install.
        (member("/etc/cron.d/x"), NOT_UNPACKED + "Removing leading `/' from member names", ""),
        (member("src/../../x"), NOT_UNPACKED + "Removing leading `src/../../' from member names", ""),
    ],
)
def test_release_refuses_links_devices_modes_and_escaping_names_before_unpacking_anything(
    r1_installed, tmp_path, hostile, starts, ends
):
    """Every member GNU tar writes into the scratch directory is checked on the line it lists
    for it: none of it becomes a release."""
    (tmp_path / "build").mkdir()
    line = refused_beside_r1(r1_installed, tmp_path, with_members(tmp_path / "build", "r2", hostile))
    assert line.startswith(starts) and line.endswith(ends), line


@shares_r1
def test_release_refuses_an_artifact_with_members_behind_a_block_that_is_no_header(r1_installed, tmp_path):
    """Behind a block that is no tar header, GNU tar skips the block, says so and unpacks what
    follows (here a link out of the release): the install fails on tar's word, and nothing it
    wrote becomes a release."""
    (tmp_path / "build").mkdir()
    hidden = with_members(
        tmp_path / "build", "r2", member("src/escape", tarfile.SYMTYPE, link="/"), unreadable_header=True
    )
    line = refused_beside_r1(r1_installed, tmp_path, hidden)
    assert line == NOT_UNPACKED + "Skipping to next header", line


@shares_r1
def test_release_installs_an_older_artifacts_wheels_only_with_the_manifests_hashes(r1_installed, tmp_path):
    """A wheel changed after the build (the artifact's own checksum rewritten to match) fails
    pip --require-hashes: the venv never holds code the manifest did not record."""
    (tmp_path / "build").mkdir()
    wheel = tiny_wheel(tmp_path)
    tampered = tiny_wheel(tmp_path / "build", HELLO_MODULE.replace(b"'hello'", b"'owned'")).read_bytes()
    assert tampered != wheel.read_bytes()
    changed = artifact(tmp_path / "build", "r2", {f"wheels/{wheel.name}": tampered}, legacy=True)
    shutil.copytree(r1_installed, tmp_path / "host", symlinks=True, dirs_exist_ok=True)
    root = tmp_path / "host" / "srv-app"
    refused = release_tool(root, "install", "r2", "--artifact", str(changed))
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr
    assert release_tool(root, "list").stdout.split() == ["r1"]
    assert release_tool(root, "current").stdout.strip() == "r1"


def test_the_tools_manifest_names_are_the_machine_contracts():
    """app-release runs alone on the instance (no import of userdata.layout): its literals are
    checked against the contract the builder writes by."""
    values = script_literals("app-release", "MANIFEST", "MACHINES")
    assert values == {"MANIFEST": layout.RELEASE_MANIFEST, "MACHINES": layout.RELEASE_MACHINES}


def static_tree(css: dict[str, str]) -> dict[str, bytes]:
    """An artifact's static/ as collectstatic with a manifest storage leaves it: each original
    name, its hashed copy (+ .gz) and staticfiles.json mapping one to the other."""
    members: dict[str, bytes] = {}
    paths = {}
    for name, body in css.items():
        stem, dot, ext = name.rpartition(".")
        hashed = f"{stem}.{hashlib.md5(body.encode()).hexdigest()[:12]}{dot}{ext}"
        paths[name] = hashed
        members |= {f"static/{name}": body.encode(), f"static/{hashed}": body.encode(), f"static/{hashed}.gz": b"gz"}
    manifest = json.dumps({"paths": paths, "version": "1.1", "hash": "x"}).encode()
    return members | {"static/staticfiles.json": manifest}


def bridge_files(root: Path) -> set[str]:
    bridge = root / "static"
    return {str(p.relative_to(bridge)) for p in bridge.rglob("*") if p.is_file()}


def test_the_static_bridge_holds_every_installed_releases_hashed_files_and_drops_removed_ones(tmp_path):
    root = tmp_path / "srv-app"
    shared = {"base.css": "body { margin: 0 }"}  # unchanged between releases: one file, one name
    trees = {
        "r1": static_tree({"site.css": "r1 { }"} | shared),
        "r2": static_tree({"site.css": "r2 { }"} | shared),
        "r3": static_tree({"site.css": "r3 { }"} | shared),
    }
    hashed = {
        release: {name.removeprefix("static/") for name in tree if name.count(".") > 1 and "staticfiles" not in name}
        for release, tree in trees.items()
    }
    for release in ("r1", "r2"):
        (tmp_path / release).mkdir()
        done = release_tool(
            root, "install", release, "--artifact", str(artifact(tmp_path / release, release, trees[release]))
        )
        assert done.returncode == 0, done.stderr
    # Installed, not yet active: r1's and r2's hashed files side by side, no original names, no manifest.
    assert bridge_files(root) == hashed["r1"] | hashed["r2"]
    assert unreadable_for_others(root / "static") == []
    assert all(p.stat().st_uid == os.getuid() and p.stat().st_mode & 0o022 == 0 for p in (root / "static").rglob("*"))
    shutil.rmtree(root / "releases" / "r1")  # r1 no longer installed
    (tmp_path / "r3").mkdir()
    done = release_tool(root, "install", "r3", "--artifact", str(artifact(tmp_path / "r3", "r3", trees["r3"])))
    assert done.returncode == 0, done.stderr
    assert bridge_files(root) == hashed["r2"] | hashed["r3"]


def test_a_manifest_naming_a_file_outside_static_is_refused_and_not_installed(tmp_path):
    root = tmp_path / "srv-app"
    hostile = {"static/staticfiles.json": json.dumps({"paths": {"a.css": "../src/manage.py"}}).encode()}
    done = release_tool(root, "install", "r1", "--artifact", str(artifact(tmp_path, "r1", hostile)))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("names '../src/manage.py', outside its static directory")
    assert release_tool(root, "list").stdout.split() == []
