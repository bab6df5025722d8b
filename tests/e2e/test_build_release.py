"""python -m ops build-release on examples/bookshelf (src/ layout, pyproject, PostgreSQL driver with
binary wheels, WhiteNoise) for both architectures, downloading from PyPI (pip's cache under
build/release-builder keeps repeated runs quick), and the artifacts through the real app-release:
the arm64 one refused on this x86_64 machine in one line, the x86_64 one installed and its venv
run. Wheel tags are read with packaging from the installed .dist-info, not trusted from the builder."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.tags import parse_tag

from ops.build_release import LAUNCHER
from tests import REPO_ROOT
from tests.machine_scripts import release_tool

EXAMPLE = REPO_ROOT / "examples" / "bookshelf"
pytestmark = pytest.mark.xdist_group("build-release")


def build(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", "build-release", *arguments], capture_output=True, text=True, timeout=600
    )


def built(out: Path, architecture: str, release: str = "r1", *extra: str) -> Path:
    done = build("--app", str(EXAMPLE), "--release", release, "--architecture", architecture, "--out", str(out), *extra)
    assert done.returncode == 0, done.stderr
    return out / f"{release}.tar.gz"


@pytest.fixture(scope="module")
def arm64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("arm64"), "arm64")


@pytest.fixture(scope="module")
def x86_64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built(tmp_path_factory.mktemp("x86_64"), "x86_64")


def members(artifact: Path) -> dict[str, bytes]:
    with tarfile.open(artifact) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


SITE_PACKAGES = "venv/lib/python3.11/site-packages/"


def installed_platforms(artifact: Path) -> dict[str, set[str]]:
    """Per distribution installed in the artifact's venv (name-version), the platforms of the
    wheel it came from, read from its .dist-info/WHEEL tags."""
    found = {}
    for name, data in members(artifact).items():
        if name.startswith(SITE_PACKAGES) and name.endswith(".dist-info/WHEEL"):
            tags = [line.removeprefix("Tag: ") for line in data.decode().splitlines() if line.startswith("Tag: ")]
            found[Path(name).parent.name.removesuffix(".dist-info")] = {
                tag.platform for text in tags for tag in parse_tag(text)
            }
    return found


@pytest.mark.parametrize(("architecture", "machine"), [("arm64", "aarch64"), ("x86_64", "x86_64")])
def test_the_artifact_holds_only_packages_for_its_architecture(architecture, machine, request):
    artifact = request.getfixturevalue(architecture)
    platforms = installed_platforms(artifact)
    foreign = {name: p for name, p in platforms.items() if not all(t == "any" or t.endswith(f"_{machine}") for t in p)}
    assert foreign == {}
    binary = sorted(name for name, p in platforms.items() if p != {"any"})
    assert [name.split("-")[0] for name in binary] == ["psycopg_binary", "wcwidth"]
    manifest = json.loads(members(artifact)["manifest.json"])
    assert (manifest["architecture"], manifest["python"], manifest["app_module"]) == (architecture, "3.11", "bookshelf")
    # The manifest records each wheel the venv was installed from, with its sha256; no wheel ships.
    assert sorted("-".join(wheel.split("-")[:2]) for wheel in manifest["wheels"]) == sorted(platforms)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in manifest["wheels"].values())
    assert not [name for name in members(artifact) if name.startswith("wheels/")]


def test_the_venv_ships_compiled_for_the_target_with_relocatable_scripts(arm64):
    """Bytecode for CPython 3.11 that no timestamp invalidates (unpacking sets new mtimes and the
    app user cannot rewrite it), and console scripts that run the python beside them."""
    files = members(arm64)
    pyc = files[f"{SITE_PACKAGES}django/db/models/__pycache__/query.cpython-311.pyc"]
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source not checked (PEP 552)
    with tarfile.open(arm64) as archive:
        celery = archive.getmember("venv/bin/celery")
    assert celery.mode == 0o755
    assert (
        files["venv/bin/celery"].startswith(LAUNCHER)
        and b"from celery.__main__ import main" in files["venv/bin/celery"]
    )
    assert "venv/bin/python" not in files and "venv/pyvenv.cfg" not in files  # added by app-release
    # Django's compiled catalogues ship, their sources (never read at run time) do not, nor the
    # catalogues of the contrib apps the settings do not install (bookshelf: contenttypes and
    # staticfiles), which Django never reads.
    assert f"{SITE_PACKAGES}django/conf/locale/de/LC_MESSAGES/django.mo" in files
    assert not [name for name in files if name.startswith(f"{SITE_PACKAGES}django/") and name.endswith(".po")]
    contrib_catalogues = {
        name.split("/")[6]
        for name in files
        if name.startswith(f"{SITE_PACKAGES}django/contrib/") and "/locale/" in name
    }
    assert contrib_catalogues == {"contenttypes"}
    assert f"{SITE_PACKAGES}django/contrib/admin/__init__.py" in files  # the code of every app ships


def test_collectstatic_ran_at_build_time_with_hashed_and_compressed_names(x86_64):
    files = members(x86_64)
    manifest = json.loads(files["static/staticfiles.json"])["paths"]
    assert re.fullmatch(r"shelf/site\.[0-9a-f]{12}\.css", manifest["shelf/site.css"])
    assert re.fullmatch(r"shelf/shelf\.[0-9a-f]{12}\.js", manifest["shelf/shelf.js"])
    for hashed in manifest.values():
        assert f"static/{hashed}" in files and f"static/{hashed}.gz" in files
    assert not [name for name in files if not name.startswith("venv/") and ("__pycache__" in name or ".pyc" in name)]
    assert "src/manage.py" in files and "src/shelf/migrations/0002_seed_books.py" in files


def test_the_same_project_builds_to_the_same_bytes(x86_64, tmp_path):
    again = built(tmp_path, "x86_64")
    assert again.read_bytes() == x86_64.read_bytes()
    assert Path(f"{again}.sha256").read_text() == Path(f"{x86_64}.sha256").read_text()


def test_app_release_refuses_the_arm64_artifact_on_this_machine_in_one_line(arm64, tmp_path):
    assert platform.machine() == "x86_64"
    root = tmp_path / "srv-app"
    refused = release_tool(root, "install", "r1", "--artifact", str(arm64))
    assert refused.returncode == 1
    assert refused.stderr == (
        "app-release: release r1 is built for arm64, this instance is x86_64; "
        "build it for the stack's architecture (python -m ops build-release --stack); not installed\n"
    )
    assert release_tool(root, "list").stdout.split() == []
    assert sorted(p.name for p in (root / "releases").iterdir()) == []


def test_app_release_installs_the_x86_64_artifact_and_its_venv_runs(x86_64, tmp_path):
    root = tmp_path / "srv-app"
    installed = release_tool(root, "install", "r1", "--artifact", str(x86_64))
    assert installed.returncode == 0, installed.stderr
    venv = root / "releases" / "r1" / "venv"
    compiled = venv / "lib/python3.11/site-packages/django/db/models/__pycache__/query.cpython-311.pyc"
    shipped = compiled.read_bytes()
    imports = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import django.db.models, whitenoise, dj_database_url, celery, psycopg; print(psycopg.pq.__impl__)",
        ],
        capture_output=True,
        text=True,
    )
    assert (imports.returncode, imports.stdout.strip()) == (0, "binary"), imports.stderr
    assert compiled.read_bytes() == shipped  # used as shipped: not recompiled at import
    for script in ("celery", "gunicorn"):
        version = subprocess.run([str(venv / "bin" / script), "--version"], capture_output=True, text=True)
        assert version.returncode == 0, version.stderr
    assert (root / "releases" / "r1" / "static" / "staticfiles.json").is_file()


def test_the_written_lock_covers_both_architectures_and_builds_with_require_hashes(tmp_path):
    lock = tmp_path / "requirements.lock"
    artifact = built(tmp_path / "out", "arm64", "r1", "--write-lock", str(lock))
    text = lock.read_text()
    entry = next(e for e in text.replace("\\\n", " ").splitlines() if e.startswith("psycopg-binary=="))
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", entry)) == 2  # the aarch64 and the x86_64 wheel
    rebuilt = built(tmp_path / "again", "arm64", "r1", "--requirements", str(lock))
    assert rebuilt.read_bytes() == artifact.read_bytes()


def test_a_dependency_without_a_wheel_for_the_target_is_refused_naming_it(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("Django>=5.2,<6\ndocopt==0.6.2\n")  # docopt publishes an sdist only
    out = tmp_path / "out"
    done = build(
        "--app", str(EXAMPLE), "--release", "r1", "--architecture", "arm64", "--requirements", str(requirements),
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("build-release: docopt==0.6.2: no wheel for arm64 (manylinux aarch64, CPython 3.11)")
    assert not out.exists()
