"""The instance scripts in userdata/files run as an instance runs them: the text the renderer
ships (userdata.shipped), by Debian's /usr/bin/python3, under the umask every unit of the stack
gets (read from the shared sandbox the units include).
Shared by the unit lane (app-release without AWS) and the e2e lane (with moto and Debian's boto3)."""

from __future__ import annotations

import ast
import atexit
import functools
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

from e2e_harness.leftovers import trees_of_dead_runs

from ops.build_release import LAUNCHER
from userdata.layout import RELEASE_MACHINES, RELEASE_MANIFEST, RELEASE_PYTHON
from userdata.shipped import FILES, shipped_script

SYSTEM_PYTHON = "/usr/bin/python3"
_SANDBOX = (FILES.parent / "templates" / "sandbox.conf").read_text()
UNIT_UMASK = int(re.search(r"^UMask=([0-7]+)$", _SANDBOX, re.MULTILINE).group(1), 8)


# The shipped copies (and the renders a run's xdist workers share, tests/conftest.py) go into one
# directory per process, named by its pid: removed when the process exits, and by the next run's
# sweep (tests/conftest.py) when it was killed.
SHIPPED_PREFIX = "shipped-"


@functools.cache
def process_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"{SHIPPED_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def sweep_shipped_dirs() -> None:
    """What a killed run left: copies whose process is gone (a running suite's stay)."""
    for path in trees_of_dead_runs(SHIPPED_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


@functools.cache
def shipped(name: str) -> Path:
    """userdata/files/<name> as machines get it, as an executable file to run."""
    path = process_dir() / name
    path.write_text(shipped_script(name))
    path.chmod(0o755)
    return path


def script_literals(name: str, *constants: str) -> dict[str, object]:
    """`constants` of userdata/files/<name>, read from its source: the script runs alone on an
    instance (it imports nothing of this repository), so tests check its literals."""
    return {
        target.id: ast.literal_eval(node.value)
        for node in ast.parse((FILES / name).read_text()).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in constants
    }


HELLO_MODULE = b"GREETING = 'hello'\n\ndef main():\n    print(GREETING)\n"
HELLO_SCRIPT = b"import sys\nfrom hello_release import main\nsys.exit(main())\n"


def tiny_wheel(directory: Path, module: bytes = HELLO_MODULE) -> Path:
    """A real, minimal pure-Python wheel, so an artifact of the older builder (wheels/) is
    installed by pip offline as on an instance."""
    path = directory / "hello_release-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("hello_release.py", module)
        info = "hello_release-1.0.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: hello-release\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        # A console script, so pip writes an executable into venv/bin as it does for celery.
        wheel.writestr(f"{info}/entry_points.txt", "[console_scripts]\nhello-release = hello_release:main\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def ready_venv(module: bytes = HELLO_MODULE) -> dict[str, bytes]:
    """venv/ as python -m ops build-release ships it (tests/e2e/test_build_release.py builds a
    real one): the package in site-packages and a console script starting with the builder's
    LAUNCHER (an executable member: its name is in EXECUTABLES)."""
    site_packages = f"venv/lib/python{RELEASE_PYTHON}/site-packages"
    return {
        f"{site_packages}/hello_release.py": module,
        f"{site_packages}/hello_release-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hello-release\n",
        "venv/bin/hello-release": LAUNCHER + HELLO_SCRIPT,
    }


EXECUTABLES = {"venv/bin/hello-release"}


def this_architecture() -> str:
    """The stack's name for this machine's architecture (x86_64 | arm64)."""
    return next(arch for arch, machine in RELEASE_MACHINES.items() if machine == platform.machine())


def manifest(release: str, wheels: dict[str, bytes], overrides: dict[str, str] | None = None) -> bytes:
    """manifest.json as python -m ops build-release writes it, for this machine by default."""
    document = {
        "release": release,
        "architecture": this_architecture(),
        "python": RELEASE_PYTHON,
        "app_module": "proj",
        "wheels": {name: hashlib.sha256(data).hexdigest() for name, data in wheels.items()},
    }
    return json.dumps(document | (overrides or {})).encode()


def artifact(
    tmp_path: Path,
    release: str,
    extra: dict[str, bytes] | None = None,
    manifest_overrides: dict[str, str] | None = None,
    *,
    legacy: bool = False,
) -> Path:
    """An artifact as the builder writes it; legacy: as the builder before venv/ did (wheels/)."""
    wheel = tiny_wheel(tmp_path)
    path = tmp_path / f"{release}.tar.gz"
    wheels = {wheel.name: wheel.read_bytes()}
    packages = {f"wheels/{name}": data for name, data in wheels.items()} if legacy else ready_venv()
    with tarfile.open(path, "w:gz") as archive:
        members = {
            "src/manage.py": b"print('manage')\n",
            RELEASE_MANIFEST: manifest(release, wheels, manifest_overrides),
            **packages,
        } | (extra or {})
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name in EXECUTABLES else 0o644
            archive.addfile(info, io.BytesIO(data))
    write_checksum(path)
    return path


def write_checksum(artifact: Path) -> Path:
    """<artifact>.sha256 in sha256sum's format, as scripts/build-release.sh writes it."""
    checksum = Path(f"{artifact}.sha256")
    checksum.write_text(f"{hashlib.sha256(artifact.read_bytes()).hexdigest()}  {artifact.name}\n")
    return checksum


def release_tool(app_root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEM_PYTHON, str(shipped("app-release")), *args],
        env={"PATH": "/usr/bin:/bin", "APP_ROOT": str(app_root)} | env,
        capture_output=True,
        text=True,
        timeout=300,
        umask=UNIT_UMASK,
    )


def unreadable_for_others(tree: Path) -> list[str]:
    """Paths under `tree` another user could not use: directories without o+rx, files without
    o+r, executables without o+x. Symlinks are judged by what they point to."""
    problems = []
    for directory, _, files in os.walk(tree):
        if stat.S_IMODE(os.stat(directory).st_mode) & 0o005 != 0o005:
            problems.append(f"{directory}/ {oct(os.stat(directory).st_mode)}")
        for name in files:
            path = Path(directory, name)
            mode = path.stat().st_mode
            wanted = 0o005 if mode & stat.S_IXUSR else 0o004
            if stat.S_IMODE(mode) & wanted != wanted:
                problems.append(f"{path} {oct(mode)}")
    return problems
