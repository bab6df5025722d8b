"""python -m ops build-release: the release artifact of any Django project, for the stack's machines.

    python -m ops build-release --app PATH --release R (--stack S | --architecture x86_64|arm64)
                                [--out DIR] [--requirements FILE] [--write-lock FILE] [--upload]

writes DIR/R.tar.gz (default DIR: build/releases) holding
  src/           the directory with manage.py (PATH or PATH/src), without caches
  venv/          every wheel the project needs, for the target only: CPython 3.11 (Debian 12's
                 python3, what the instances run) on manylinux x86_64 or aarch64, or pure Python,
                 installed and compiled (a venv but its interpreter, which app-release adds);
                 without Django's .po files and the translations of the django.contrib apps
                 the settings do not install, which Django never reads
  static/        `manage.py collectstatic --noinput` run here with DJANGO_STATIC_ROOT pointing at it
  manifest.json  release, architecture, python, the app's module and each wheel's sha256
and DIR/R.tar.gz.sha256 (sha256sum's format); then it prints the digest, which the live release
pins (`python -m ops deploy --sha256`, or app.release R@sha256:HEX for a new stack: app-release
installs no other artifact), and the `aws s3 cp` commands (or uploads, with --upload and --stack).

The requirements are --requirements FILE, else the project's requirements.lock, requirements.txt,
or pyproject.toml's [project] dependencies. A file with `--hash=` lines is installed with
--require-hashes; --write-lock FILE pins the requirements with the hashes of both architectures'
wheels, writes FILE and builds from it.
Wheels only (--only-binary :all:): building an sdist would run build tools no hash covers, and
for another architecture would produce wheels for this one. Dependency markers are decided by
the builder's Python (PYTHON, default Debian 12's /usr/bin/python3: markers such as redis's
`python_full_version < "3.11.3"` are decided for 3.11.2); markers on the platform itself
(`platform_machine == "aarch64"`) are decided for the build host, so such a dependency must be
listed unconditionally. Bad input is refused in one line and nothing is written.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ops.stack import program_project
from release_name import RULE as RELEASE_RULE
from release_name import is_release_name
from userdata.layout import (
    APP_ENV_VARIABLES,
    RELEASE_DIGEST_SEPARATOR,
    RELEASE_MACHINES,
    RELEASE_MANIFEST,
    RELEASE_PYTHON,
    SECRETS_ENV_VARIABLES,
    VERSION_ENV_VARIABLES,
)

REPO = Path(__file__).resolve().parent.parent
TARGET_PYTHON = RELEASE_PYTHON
MACHINES = RELEASE_MACHINES
# Debian 12's glibc: the newest manylinux its instances run, whatever the instance type.
TARGET_GLIBC_MINOR = 36
CHECKSUM_SUFFIX = ".sha256"
REQUIREMENT_FILES = ("requirements.lock", "requirements.txt")
BUILDER_DIR = REPO / "build" / "release-builder"
# pip's cache shared by every build: pure-Python wheels are downloaded once for both
# architectures, and a repeated build reads its wheels from here.
PIP_CACHE = BUILDER_DIR / "pip-cache"
SKIPPED_NAMES = ("__pycache__", ".git", ".hg", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "node_modules")
SKIPPED_SUFFIXES = (".pyc", ".pyo")
# What the project's settings get at build time: collectstatic imports them, and a settings module
# that refuses to start without its environment must still import. Stand-ins that parse (JSON,
# whole seconds, URLs), never a real secret; the build passes nothing else from the caller's env.
STAND_IN = "build-time-stand-in"
BUILD_TIME_VALUES = {
    "CELERY_TASK_ROUTES": "{}",
    "CELERY_TASK_DEFAULT_QUEUE": "default",
    "CELERY_TASK_SOFT_TIME_LIMIT": "60",
    "CELERY_TASK_TIME_LIMIT": "120",
    "CELERY_VISIBILITY_TIMEOUT": "3600",
    "CELERY_RESULT_EXPIRES": "3600",
    "CELERY_BROKER_URL": "redis://build.invalid:6379/0",
    "CELERY_RESULT_BACKEND": "",
    "DJANGO_ALLOWED_HOSTS": "build.invalid",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://build.invalid",
    "DJANGO_SECRET_KEY": "build-time-only-not-a-secret",
    "DATABASE_URL": "postgres://build:build@build.invalid:5432/build",
}


# The first line of every console script in the artifact's venv/bin, instead of the builder's
# interpreter (distlib's relocatable form: sh runs the line, Python reads it as a string). It runs
# the venv's python beside the script's real path, so a unit started through current/ keeps the
# release it started with whatever `current` points at later, and the venv works wherever
# app-release unpacks it (APP_ROOT/releases/RELEASE/venv).
LAUNCHER = b"""#!/bin/sh
'''exec' "$(dirname -- "$(realpath -- "$0")")/python" "$0" "$@"
' '''
"""


class BuildRefused(Exception):
    """Bad input or a project the target cannot run; one line, nothing written."""


@dataclass(frozen=True)
class Project:
    source: Path  # the directory holding manage.py: the artifact's src/
    requirements: Path  # requirements file or pyproject.toml
    app_module: str  # the package of the settings module (DJANGO_SETTINGS_MODULE's first part)
    settings_module: str


@dataclass(frozen=True)
class Target:
    architecture: str  # the stack's name: x86_64 | arm64
    settings_module: str | None = None  # the stack's app.settingsModule (default <module>.settings.production)
    bucket: str | None = None
    key: str | None = None  # <artifactPrefix><release>.tar.gz

    @property
    def machine(self) -> str:
        return MACHINES[self.architecture]


# ---- pure parts ------------------------------------------------------------------------------


def platform_tags(architecture: str) -> list[str]:
    """The manylinux platforms a Debian 12 instance of this architecture runs, newest first.
    pip's --platform takes each tag literally (it does not widen manylinux_2_36 to older glibcs)."""
    machine = MACHINES[architecture]
    oldest = 5 if machine == "x86_64" else 17  # aarch64 wheels start at manylinux2014 (glibc 2.17)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(TARGET_GLIBC_MINOR, oldest - 1, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    return tags + [f"{alias}_{machine}" for alias, minor in legacy.items() if minor >= oldest]


def supported_tags(architecture: str) -> frozenset[Tag]:
    python = tuple(int(part) for part in TARGET_PYTHON.split("."))
    platforms = platform_tags(architecture)
    return frozenset([*cpython_tags(python, platforms=platforms), *compatible_tags(python, platforms=platforms)])


def foreign_wheels(names: Iterable[str], architecture: str) -> list[str]:
    """The wheel files an instance of this architecture cannot install (wrong platform or Python)."""
    supported = supported_tags(architecture)
    foreign = []
    for name in names:
        try:
            tags = parse_wheel_filename(name)[3]
        except InvalidWheelFilename:
            foreign.append(name)
            continue
        if not tags & supported:
            foreign.append(name)
    return sorted(foreign)


def target_options(architecture: str) -> list[str]:
    """pip's options that pick the target's wheels (CPython, ABI, platforms), not this host's."""
    options = ["--only-binary", ":all:", "--implementation", "cp", "--python-version", TARGET_PYTHON]
    options += ["--abi", "cp" + TARGET_PYTHON.replace(".", "")]
    for tag in platform_tags(architecture):
        options += ["--platform", tag]
    return options


def download_command(
    pip: Sequence[str], requirements: Path, dest: Path, architecture: str, *, hashed: bool
) -> list[str]:
    command = [*pip, "download", "--disable-pip-version-check", "--quiet", "--dest", str(dest)]
    command += target_options(architecture)
    if hashed:
        command.append("--require-hashes")
    return command + ["-r", str(requirements)]


def venv_install_command(pip: Sequence[str], wheels: Path, site_packages: Path, architecture: str) -> list[str]:
    """pip installing exactly the downloaded wheels (name==version from each file name, found
    only in wheels/) into the target's site-packages; compiled afterwards, for the target."""
    pins = sorted("==".join(name.split("-")[:2]) for name in os.listdir(wheels))
    command = [*pip, "install", "--disable-pip-version-check", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    command += ["--find-links", str(wheels), "--target", str(site_packages), *target_options(architecture)]
    return command + pins


def missing_wheel_problem(pip_output: str, architecture: str) -> str | None:
    """pip's "no matching distribution" as one line naming the package and the fix."""
    match = re.search(r"No matching distribution found for (\S+)", pip_output)
    if match is None:
        return None
    package = match.group(1)
    return (
        f"{package}: no wheel for {architecture} (manylinux {MACHINES[architecture]}, CPython {TARGET_PYTHON}) "
        f"on the index; pin a version that publishes one, or replace the package (sdists are not built: "
        f"no hash covers their build tools)"
    )


def is_hash_locked(text: str) -> bool:
    return re.search(r"--hash[= ]sha256:", text) is not None


def pyproject_dependencies(text: str, path: Path) -> list[str]:
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError as error:
        raise BuildRefused(f"{path}: not valid TOML: {error}") from None
    dependencies = project.get("dependencies")
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise BuildRefused(f"{path}: no [project] dependencies list; list the project's requirements there")
    return list(dependencies)


def settings_module_of(manage_py: str) -> str | None:
    match = re.search(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""", manage_py)
    return match.group(1) if match else None


def build_environment(static_root: Path, settings_module: str, release: str) -> dict[str, str]:
    """The only environment collectstatic runs with: the stack's names with stand-in values."""
    names = (*APP_ENV_VARIABLES, *SECRETS_ENV_VARIABLES, *VERSION_ENV_VARIABLES)
    # A name the stack adds later still gets a value, so a settings module that requires it imports.
    env = {name: BUILD_TIME_VALUES.get(name, STAND_IN) for name in names} | {
        name: value for name, value in BUILD_TIME_VALUES.items() if name not in names
    }
    return env | {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "APP_RELEASE": release,
        "DJANGO_STATIC_ROOT": str(static_root),
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def manifest(release: str, architecture: str, app_module: str, wheel_hashes: Mapping[str, str]) -> dict[str, Any]:
    return {
        "release": release,
        "architecture": architecture,
        "machine": MACHINES[architecture],
        "python": TARGET_PYTHON,
        "app_module": app_module,
        "wheels": dict(sorted(wheel_hashes.items())),
    }


def lock_text(wheels_by_architecture: Mapping[str, Mapping[str, str]]) -> str:
    """A pip hash lock (`name==version --hash=...` per line) covering every architecture's wheels:
    the same pins, each with the hashes of all the files any target installs."""
    pins: dict[str, tuple[str, set[str]]] = {}
    for architecture, wheels in wheels_by_architecture.items():
        for filename, digest in wheels.items():
            name, version, _, _ = parse_wheel_filename(filename)
            pinned, hashes = pins.setdefault(name, (str(version), set()))
            if pinned != str(version):
                raise BuildRefused(
                    f"{name}: resolves to {pinned} for one architecture and {version} for {architecture}; "
                    f"pin one version in the requirements"
                )
            hashes.add(digest)
    lines = ["# Written by `python -m ops build-release --write-lock`: the wheels of every architecture."]
    for pinned_name in sorted(pins):
        pinned_version, pinned_hashes = pins[pinned_name]
        pin = f"{pinned_name}=={pinned_version}"
        lines.append(" \\\n    ".join([pin, *(f"--hash=sha256:{h}" for h in sorted(pinned_hashes))]))
    return "\n".join(lines) + "\n"


def pin_hint(release: str, digest: str, stack: str | None) -> str:
    """The artifact's digest, which the live release pins (docs/release-digest.md), and where it goes."""
    pinned = f"{release}{RELEASE_DIGEST_SEPARATOR}{digest}"
    deploy = f"python -m ops deploy --stack {stack or '<stack>'} --release {release} --sha256 {digest}"
    return f"build-release: sha256 {digest}: the first release of a new stack is app.release {pinned}; later: {deploy}"


def upload_commands(artifact: Path, bucket: str | None, key: str | None) -> list[str]:
    destination = f"s3://{bucket}/{key}" if bucket and key else f"s3://<artifactBucket>/<artifactPrefix>{artifact.name}"
    return [
        f"aws s3 cp {artifact} {destination}",
        f"aws s3 cp {artifact}{CHECKSUM_SUFFIX} {destination}{CHECKSUM_SUFFIX}",
    ]


def artifact_members(staging: Path) -> Iterator[Path]:
    """Every path under staging in sorted order, directories before their contents."""
    for directory, subdirectories, files in os.walk(staging):
        subdirectories.sort()
        base = Path(directory)
        if base != staging:
            yield base
        yield from (base / name for name in sorted(files))


def write_reproducible_tar(staging: Path, target: Path) -> None:
    """Sorted names, owner 0, mtime 0 (also in the gzip header): the same tree gives the same bytes."""
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for path in artifact_members(staging):
                info = tarfile.TarInfo(path.relative_to(staging).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if path.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
                else:
                    data = path.read_bytes()
                    info.size, info.mode = len(data), 0o755 if os.access(path, os.X_OK) else 0o644
                    archive.addfile(info, io.BytesIO(data))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- inputs ----------------------------------------------------------------------------------


def find_project(app: Path, requirements: Path | None, settings_module: str | None) -> Project:
    source = next((d for d in (app, app / "src") if (d / "manage.py").is_file()), None)
    if source is None:
        raise BuildRefused(f"--app {app}: no manage.py in it or in its src/; point --app at a Django project")
    if requirements is None:
        candidates = [source / n for n in REQUIREMENT_FILES] + [app / n for n in REQUIREMENT_FILES]
        candidates += [app / "pyproject.toml", source / "pyproject.toml"]
        requirements = next((c for c in candidates if c.is_file()), None)
        if requirements is None:
            raise BuildRefused(
                f"--app {app}: no {', '.join(REQUIREMENT_FILES)} or pyproject.toml; name one with --requirements FILE"
            )
    elif not requirements.is_file():
        raise BuildRefused(f"--requirements {requirements}: no such file")
    settings_module = settings_module or settings_module_of((source / "manage.py").read_text())
    if settings_module is None:
        raise BuildRefused(
            f"--app {app}: manage.py sets no DJANGO_SETTINGS_MODULE; the stack's app.settingsModule names it"
        )
    return Project(source, requirements, settings_module.split(".")[0], settings_module)


def stack_target(stack: str, release: str, program_dir: Path = REPO) -> Target:
    """The stack's architecture, settings module and artifact location, from its validated config."""
    from config import ConfigError, load_settings

    path = program_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise BuildRefused(f"--stack {stack}: no {path.name} in {program_dir}")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    project = program_project(program_dir)
    raw = {key.removeprefix(f"{project}:"): value for key, value in config.items() if key.startswith(f"{project}:")}
    raw = {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}
    try:
        stack_settings = load_settings(raw, stack=stack, region=config.get("aws:region"), project=project)
    except ConfigError as error:
        raise BuildRefused(f"--stack {stack}: {str(error).splitlines()[0]}") from None
    app = stack_settings.app
    return Target(
        architecture=stack_settings.instances.architecture,
        settings_module=app.django_settings_module,
        bucket=app.artifact_bucket,
        key=f"{app.artifact_prefix}{release}.tar.gz",
    )


# ---- the build -------------------------------------------------------------------------------


def builder_pip(python: str) -> list[str]:
    """pip of a venv made from the instances' Python (it decides the markers for 3.11)."""
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    )
    if version.returncode != 0 or version.stdout.strip() != TARGET_PYTHON:
        found = version.stdout.strip() or "no Python"
        raise BuildRefused(f"PYTHON={python}: {found}; the instances run {TARGET_PYTHON}: set PYTHON to a 3.11")
    venv = BUILDER_DIR / Path(python).name
    if not (venv / "bin" / "pip").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    return [str(venv / "bin" / "pip")]


def last_line(output: str) -> str:
    """What a failed tool said last: the line a refusal quotes (its error, after its traceback)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_pip(command: list[str], architecture: str) -> None:
    env = os.environ | {"PIP_CACHE_DIR": str(PIP_CACHE)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        output = done.stderr + done.stdout
        problem = missing_wheel_problem(output, architecture)
        raise BuildRefused(problem or f"pip download for {architecture} failed: {last_line(output)}")


def download_wheels(
    pip: list[str], requirements: Path, dest: Path, architecture: str, *, hashed: bool
) -> dict[str, str]:
    dest.mkdir(parents=True, exist_ok=True)
    run_pip(download_command(pip, requirements, dest, architecture, hashed=hashed), architecture)
    names = sorted(p.name for p in dest.iterdir())
    if foreign := foreign_wheels(names, architecture):
        raise BuildRefused(f"{foreign[0]}: not installable on {architecture} with CPython {TARGET_PYTHON}")
    return {name: sha256_of(dest / name) for name in names}


def builder_python(pip: Sequence[str]) -> str:
    return pip[0].removesuffix("/pip") + "/python"


def site_packages_of(venv: Path) -> Path:
    return venv / "lib" / f"python{TARGET_PYTHON}" / "site-packages"


def ready_venv(pip: Sequence[str], wheels: Path, venv: Path, architecture: str) -> None:
    """The release's venv but its interpreter (app-release adds bin/python and pyvenv.cfg at
    install): the wheels installed for the target, their bytecode compiled here (the builder runs
    the target's Python minor version: the same bytecode), the console scripts relocatable."""
    site_packages = site_packages_of(venv)
    run_pip(venv_install_command(pip, wheels, site_packages, architecture), architecture)
    scripts = site_packages / "bin"  # pip --target puts the console scripts there
    (venv / "bin").mkdir()
    for script in sorted(scripts.iterdir()) if scripts.is_dir() else []:
        first, _, rest = script.read_bytes().partition(b"\n")
        if first.startswith(b"#!") and b"python" in first:
            script.write_bytes(LAUNCHER + rest)
        script.rename(venv / "bin" / script.name)
    if scripts.is_dir():
        scripts.rmdir()
    # Django's translation sources: gettext reads the compiled .mo beside each, never the .po. Not
    # shipped: 1,226 of the sample artifact's 6,347 files (8.8 of its 60 MB), each one more file
    # to write at every boot (issue 25.1). Django's only: another package may read its .po.
    for catalogue in (site_packages / "django").rglob("*.po"):
        catalogue.unlink()
    # unchecked-hash: the tree is immutable once installed and the artifact's digest covers it; a
    # timestamp check would fail for every unpacked file (unpacking sets new mtimes) and the app
    # user cannot rewrite them. Paths relative (-s): the same bytes each build. A file that does not
    # compile (a package's test data) is compiled when imported, as before.
    subprocess.run(
        [builder_python(pip), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
        + ["-s", str(venv), str(site_packages)],
        capture_output=True,
    )


def host_architecture() -> str:
    machine = platform.machine()
    return next((arch for arch, m in MACHINES.items() if m == machine), "x86_64")


def collectstatic_venv(pip: list[str], requirements: Path, wheels: Path, target: str, *, hashed: bool) -> Path:
    """A venv of the project's packages for this host, kept between builds of the same wheels."""
    host = host_architecture()
    with tempfile.TemporaryDirectory(prefix="host-wheels-") as scratch:
        if host != target:  # the target's wheels cannot run here: the same pins, this host's files
            wheels = Path(scratch)
            download_wheels(pip, requirements, wheels, host, hashed=hashed)
        files = sorted(wheels.glob("*.whl"))
        key = hashlib.sha256("\n".join(f.name for f in files).encode()).hexdigest()[:16]
        venv = BUILDER_DIR / "venvs" / key
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([builder_python(pip), "-m", "venv", "--without-pip", str(venv)], check=True)
            subprocess.run(
                [*pip, "--python", str(venv / "bin/python"), "install", "--quiet", "--disable-pip-version-check"]
                + ["--no-index", "--no-deps", *map(str, files)],
                check=True,
            )
            (venv / ".complete").write_text("")
    return venv


def collect_static(venv: Path, source: Path, static_root: Path, project: Project, release: str) -> str:
    env = build_environment(static_root, project.settings_module, release)
    done = subprocess.run(
        [str(venv / "bin/python"), "manage.py", "collectstatic", "--noinput"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if "Unknown command: 'collectstatic'" in done.stderr:
            return "no django.contrib.staticfiles in INSTALLED_APPS: static/ is empty"
        raise BuildRefused(
            f"collectstatic with {project.settings_module} failed: {last_line(done.stderr)} "
            f"(the settings get stand-in values at build time; see {Path(__file__).name})"
        )
    counts = re.search(r"(\d+) static files? copied", done.stdout)
    return f"{counts.group(1) if counts else 'no'} static files collected, hashed and compressed"


# Run by the collectstatic venv's python in the project's source, with the same settings and
# environment: the apps as Django loads them (an AppConfig path gives its app's name).
INSTALLED_APPS_SCRIPT = (
    "import django, json; django.setup(); from django.apps import apps; "
    "print(json.dumps(sorted(config.name for config in apps.get_app_configs())))"
)


def installed_apps(venv: Path, source: Path, static_root: Path, project: Project, release: str) -> set[str]:
    done = subprocess.run(
        [str(venv / "bin/python"), "-c", INSTALLED_APPS_SCRIPT],
        cwd=source,
        env=build_environment(static_root, project.settings_module, release),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BuildRefused(f"reading INSTALLED_APPS with {project.settings_module} failed: {last_line(done.stderr)}")
    return set(json.loads(done.stdout.splitlines()[-1]))


def leave_out_unused_translations(site_packages: Path, installed: set[str]) -> list[str]:
    """Removes the locale/ of every django.contrib app the settings do not install; returns those
    apps. Django reads an app's catalogues only when the app is installed (its translation
    machinery, check_for_language and JavaScriptCatalog go through the app registry), so these
    are files it never opens: about 300 an app (gis, postgres, admindocs, ...), each one more for
    every boot to write (issue 25.1)."""
    left_out = []
    for locale in sorted((site_packages / "django" / "contrib").glob("*/locale")):
        app = f"django.contrib.{locale.parent.name}"
        if app not in installed:
            shutil.rmtree(locale)
            left_out.append(app)
    return left_out


def copy_source(source: Path, into: Path) -> None:
    def ignored(_: str, names: list[str]) -> list[str]:
        return [n for n in names if n in SKIPPED_NAMES or n.endswith(SKIPPED_SUFFIXES)]

    shutil.copytree(source, into, ignore=ignored)


def requirements_file(project: Project, scratch: Path) -> tuple[Path, bool]:
    """The pip requirements file to download from, and whether it is hash-locked."""
    text = project.requirements.read_text()
    if project.requirements.name == "pyproject.toml":
        path = scratch / "requirements.txt"
        path.write_text("\n".join(pyproject_dependencies(text, project.requirements)) + "\n")
        return path, False
    return project.requirements, is_hash_locked(text)


def write_lock(pip: list[str], requirements: Path, lock: Path, scratch: Path, *, hashed: bool) -> None:
    wheels = {
        arch: download_wheels(pip, requirements, scratch / f"lock-{arch}", arch, hashed=hashed) for arch in MACHINES
    }
    lock.write_text(lock_text(wheels))


def build(args: argparse.Namespace, out: Any = print) -> Path:
    release: str = args.release
    if not is_release_name(release):
        raise BuildRefused(f"release {release!r} is invalid; use {RELEASE_RULE}")
    target = stack_target(args.stack, release) if args.stack else Target(args.architecture)
    if args.upload and not (args.stack and target.bucket):
        raise BuildRefused("--upload: needs --stack with app.artifactBucket set (where the instances download from)")
    project = find_project(args.app, args.requirements, args.settings or target.settings_module)
    pip = builder_pip(args.python)
    out_dir: Path = args.out
    with tempfile.TemporaryDirectory(prefix="build-release-") as scratch_name:
        scratch = Path(scratch_name)
        requirements, hashed = requirements_file(project, scratch)
        if args.write_lock:
            write_lock(pip, requirements, scratch / "lock.txt", scratch, hashed=hashed)
            requirements, hashed = scratch / "lock.txt", True
        staging, wheels = scratch / "artifact", scratch / "wheels"
        wheel_hashes = download_wheels(pip, requirements, wheels, target.architecture, hashed=hashed)
        ready_venv(pip, wheels, staging / "venv", target.architecture)
        copy_source(project.source, staging / "src")
        (staging / "static").mkdir()
        venv = collectstatic_venv(pip, requirements, wheels, target.architecture, hashed=hashed)
        note = collect_static(venv, staging / "src", staging / "static", project, release)
        installed = installed_apps(venv, staging / "src", staging / "static", project, release)
        if left_out := leave_out_unused_translations(site_packages_of(staging / "venv"), installed):
            note += f"; the translations of {len(left_out)} django.contrib apps not installed left out"
        document = manifest(release, target.architecture, project.app_module, wheel_hashes)
        (staging / RELEASE_MANIFEST).write_text(json.dumps(document, indent=2) + "\n")
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = out_dir / f"{release}.tar.gz"
        partial = out_dir / f".{release}.tar.gz.partial"
        write_reproducible_tar(staging, partial)
        digest = sha256_of(partial)
        os.replace(partial, artifact)
        Path(f"{artifact}{CHECKSUM_SUFFIX}").write_text(f"{digest}  {artifact.name}\n")
        if args.write_lock:
            shutil.copyfile(scratch / "lock.txt", args.write_lock)
    out(f"build-release: {artifact} ({target.architecture}, {len(wheel_hashes)} wheels; {note})")
    out(pin_hint(release, digest, args.stack))
    if args.write_lock:
        out(f"build-release: wrote the hash lock {args.write_lock}; pass it as --requirements from now on")
    if args.upload:
        upload(artifact, target)
    else:
        for command in upload_commands(artifact, target.bucket, target.key):
            out(command)
    return artifact


def upload(artifact: Path, target: Target) -> None:
    import boto3

    assert target.bucket and target.key  # checked before the build
    s3 = boto3.client("s3")
    s3.upload_file(str(artifact), target.bucket, target.key)
    s3.upload_file(f"{artifact}{CHECKSUM_SUFFIX}", target.bucket, target.key + CHECKSUM_SUFFIX)
    print(f"build-release: uploaded s3://{target.bucket}/{target.key} and its {CHECKSUM_SUFFIX}")


def build_parser() -> argparse.ArgumentParser:
    from ops.cli import OneLineParser  # here: ops.cli imports this module for its dispatch

    parser = OneLineParser(prog="python -m ops build-release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", type=Path, required=True, help="the Django project (with manage.py, or src/manage.py)")
    parser.add_argument("--release", required=True, help="the release name (the artifact is <release>.tar.gz)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="build for this stack (Pulumi.<stack>.yaml: instances.architecture, app.*)")
    where.add_argument("--architecture", choices=sorted(MACHINES), help="build for this architecture")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "releases", help="output directory")
    parser.add_argument("--requirements", type=Path, help="the requirements file (default: found in the project)")
    parser.add_argument("--settings", help="the Django settings module collectstatic runs with")
    parser.add_argument("--write-lock", type=Path, metavar="FILE", help="pin the requirements with hashes into FILE")
    parser.add_argument("--upload", action="store_true", help="upload to the stack's artifact bucket with boto3")
    parser.add_argument("--python", default=os.environ.get("PYTHON", "/usr/bin/python3"), help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        build(args)
    except BuildRefused as error:
        print(f"build-release: {error}", file=sys.stderr)
        return 2
    return 0
