"""python -m ops build-release without the network: its pure parts (target platforms, wheel tags,
pip's command line and refusals, the lock, the manifest, the build environment, the reproducible
tar), the stack's architecture, the upload against moto, and bad input refused in one line with
nothing written. The builds themselves (PyPI) are in tests/e2e/test_build_release.py."""

from __future__ import annotations

import gzip
import os
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from ops import build_release
from ops.build_release import BuildRefused, Target
from ops.cli import main as ops_main
from tests import REPO_ROOT
from userdata import layout

EXAMPLE = REPO_ROOT / "examples" / "bookshelf"
DIGEST = "ab" * 32


def test_arm64_targets_only_aarch64_manylinux_up_to_debian_12s_glibc():
    tags = build_release.platform_tags("arm64")
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_28_aarch64" in tags  # psycopg-binary's
    assert "manylinux2014_aarch64" in tags and all(tag.endswith("_aarch64") for tag in tags)
    assert "manylinux_2_16_aarch64" not in tags and "manylinux_2_37_aarch64" not in tags
    assert {"manylinux1_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64"} <= set(
        build_release.platform_tags("x86_64")
    )


@pytest.mark.parametrize(
    ("wheel", "x86_64", "arm64"),
    [
        ("django-5.2.19-py3-none-any.whl", True, True),
        ("six-1.17.0-py2.py3-none-any.whl", True, True),
        ("wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True, False),
        ("psycopg_binary-3.3.9-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", False, True),
        ("psycopg_binary-3.3.9-cp312-cp312-manylinux_2_28_aarch64.whl", False, False),  # another Python
        ("newlib-1.0-cp311-cp311-manylinux_2_39_x86_64.whl", False, False),  # newer glibc than Debian 12's
        ("musl-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", False, False),
        ("not-a-wheel.whl", False, False),
    ],
)
def test_a_wheel_is_foreign_unless_its_tags_fit_the_target(wheel, x86_64, arm64):
    assert build_release.foreign_wheels([wheel], "x86_64") == ([] if x86_64 else [wheel])
    assert build_release.foreign_wheels([wheel], "arm64") == ([] if arm64 else [wheel])


def test_wheels_are_downloaded_for_the_target_platform_and_python_only():
    command = build_release.download_command(["pip"], Path("req.txt"), Path("w"), "arm64", hashed=False)
    options = list(zip(command, command[1:]))
    assert ("--only-binary", ":all:") in options and ("--python-version", "3.11") in options
    assert ("--implementation", "cp") in options and ("--abi", "cp311") in options
    platforms = [value for option, value in options if option == "--platform"]
    assert platforms == build_release.platform_tags("arm64")
    assert "--require-hashes" not in command and command[-2:] == ["-r", "req.txt"]
    hashed = build_release.download_command(["pip"], Path("req.lock"), Path("w"), "arm64", hashed=True)
    assert "--require-hashes" in hashed


def test_the_venv_gets_exactly_the_downloaded_wheels_installed_for_the_target(tmp_path):
    """Offline, no dependency resolution, compiled afterwards; the target's platform options, so an
    x86_64 builder installs an arm64 venv (tests/e2e/test_build_release.py builds both)."""
    for name in ("django-5.2.19-py3-none-any.whl", "wcwidth-0.9.4-cp310-abi3-manylinux2014_aarch64.whl"):
        (tmp_path / name).write_bytes(b"")
    command = build_release.venv_install_command(["pip"], tmp_path, Path("venv/site"), "arm64")
    assert command[:2] == ["pip", "install"]
    assert {"--no-index", "--no-deps", "--no-compile"} <= set(command)
    options = list(zip(command, command[1:]))
    assert ("--find-links", str(tmp_path)) in options and ("--target", "venv/site") in options
    assert build_release.target_options("arm64") == command[-len(build_release.target_options("arm64")) - 2 : -2]
    assert command[-2:] == ["django==5.2.19", "wcwidth==0.9.4"]


def test_a_dependency_without_a_target_wheel_is_named_with_the_fix():
    pip_output = (
        "ERROR: Could not find a version that satisfies the requirement docopt==0.6.2 (from versions: none)\n"
        "ERROR: No matching distribution found for docopt==0.6.2\n"
    )
    problem = build_release.missing_wheel_problem(pip_output, "arm64")
    assert problem is not None and "\n" not in problem
    assert problem.startswith("docopt==0.6.2: no wheel for arm64 (manylinux aarch64, CPython 3.11)")
    assert "pin a version that publishes one" in problem
    assert build_release.missing_wheel_problem("ERROR: some other failure", "arm64") is None


def test_the_lock_pins_each_package_with_every_architectures_hashes():
    text = build_release.lock_text(
        {
            "x86_64": {
                "wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.whl": "1" * 64,
                "Django-5.2-py3-none-any.whl": DIGEST,
            },
            "arm64": {
                "wcwidth-0.9.4-cp310-abi3-manylinux2014_aarch64.whl": "2" * 64,
                "django-5.2-py3-none-any.whl": DIGEST,
            },
        }
    )
    entries = [e.split() for e in text.replace("\\\n", " ").splitlines() if not e.startswith("#")]
    assert entries == [
        ["django==5.2", f"--hash=sha256:{DIGEST}"],
        ["wcwidth==0.9.4", f"--hash=sha256:{'1' * 64}", f"--hash=sha256:{'2' * 64}"],
    ]
    assert build_release.is_hash_locked(text) and not build_release.is_hash_locked("django==5.2\n")
    with pytest.raises(BuildRefused, match=r"^six: resolves to 1\.16 for one architecture and 1\.17 for arm64"):
        build_release.lock_text(
            {"x86_64": {"six-1.16-py3-none-any.whl": DIGEST}, "arm64": {"six-1.17-py3-none-any.whl": DIGEST}}
        )


def test_the_manifest_records_release_architecture_python_module_and_wheel_hashes():
    document = build_release.manifest(
        "r1", "arm64", "bookshelf", {"b-1-py3-none-any.whl": DIGEST, "a-1-py3-none-any.whl": DIGEST}
    )
    assert document == {
        "release": "r1",
        "architecture": "arm64",
        "machine": "aarch64",
        "python": layout.RELEASE_PYTHON,
        "app_module": "bookshelf",
        "wheels": {"a-1-py3-none-any.whl": DIGEST, "b-1-py3-none-any.whl": DIGEST},
    }


def test_collectstatic_gets_the_stacks_names_with_stand_ins_and_nothing_of_the_callers_env(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-key")
    env = build_release.build_environment(Path("/tmp/static"), "bookshelf.settings", "r1")
    assert set(layout.APP_ENV_VARIABLES) | set(layout.SECRETS_ENV_VARIABLES) | {"DATABASE_URL"} <= set(env)
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["DJANGO_SECRET_KEY"] == "build-time-only-not-a-secret"
    assert env["DJANGO_STATIC_ROOT"] == "/tmp/static" and env["APP_RELEASE"] == "r1"
    assert env["DJANGO_SETTINGS_MODULE"] == "bookshelf.settings"
    assert all(".invalid" in env[name] for name in ("CELERY_BROKER_URL", "DATABASE_URL"))
    assert all(env[name] for name in layout.APP_ENV_VARIABLES)  # a settings module may require any of them


def test_only_the_installed_contrib_apps_keep_their_translations(tmp_path):
    """Django reads an app's locale/ only when the app is installed; its own (conf/locale, the
    formats and messages of every language) and other packages' always ship."""
    contrib = tmp_path / "django" / "contrib"
    catalogues = [
        "django/conf/locale/de/LC_MESSAGES/django.mo",
        "django/contrib/admin/locale/de/LC_MESSAGES/django.mo",
        "django/contrib/auth/locale/de/LC_MESSAGES/django.mo",
        "django/contrib/gis/locale/de/LC_MESSAGES/django.mo",
        "humanize/locale/de/LC_MESSAGES/humanize.mo",
    ]
    for name in catalogues:
        (tmp_path / name).parent.mkdir(parents=True)
        (tmp_path / name).write_bytes(b"")
    (contrib / "staticfiles").mkdir()  # an app without catalogues
    left_out = build_release.leave_out_unused_translations(tmp_path, {"django.contrib.auth", "shelf"})
    assert left_out == ["django.contrib.admin", "django.contrib.gis"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.mo")) == [
        "django/conf/locale/de/LC_MESSAGES/django.mo",
        "django/contrib/auth/locale/de/LC_MESSAGES/django.mo",
        "humanize/locale/de/LC_MESSAGES/humanize.mo",
    ]
    assert (contrib / "admin").is_dir() and (contrib / "gis").is_dir()  # the apps' code ships


def test_settings_that_fail_to_load_are_refused_with_their_last_line(tmp_path):
    """The builder runs the project's settings (reading INSTALLED_APPS, collectstatic) in the
    collectstatic venv; a settings module that raises is refused quoting what it said last."""
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    venv_python.chmod(0o755)
    source = tmp_path / "src"
    (source / "shop").mkdir(parents=True)
    (source / "shop" / "__init__.py").write_text("")
    (source / "shop" / "settings.py").write_text("raise RuntimeError('SHOP_PAYMENTS_URL is required')\n\n")
    project = build_release.Project(source, source / "requirements.txt", "shop", "shop.settings")
    with pytest.raises(BuildRefused) as refused:
        build_release.installed_apps(venv_python.parent.parent, source, tmp_path / "static", project, "r1")
    assert str(refused.value) == (
        "reading INSTALLED_APPS with shop.settings failed: RuntimeError: SHOP_PAYMENTS_URL is required"
    )
    assert build_release.last_line("") == "(no output)"


def test_the_artifact_tar_is_the_same_bytes_for_the_same_tree(tmp_path):
    tree = tmp_path / "staging"
    (tree / "src" / "pkg").mkdir(parents=True)
    (tree / "wheels").mkdir()
    (tree / "src" / "pkg" / "b.py").write_text("b\n")
    (tree / "src" / "a.py").write_text("a\n")
    (tree / "src" / "manage.py").write_text("#!/usr/bin/env python3\n")
    (tree / "src" / "manage.py").chmod(0o755)
    build_release.write_reproducible_tar(tree, tmp_path / "one.tar.gz")
    for path in tree.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    build_release.write_reproducible_tar(tree, tmp_path / "two.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    assert gzip.open(tmp_path / "one.tar.gz").read() and (tmp_path / "one.tar.gz").read_bytes()[4:8] == b"\0\0\0\0"
    with tarfile.open(tmp_path / "one.tar.gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["src", "src/a.py", "src/manage.py", "src/pkg", "src/pkg/b.py", "wheels"]
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}
    assert {m.name: m.mode for m in members if m.isfile()} == {
        "src/a.py": 0o644,
        "src/manage.py": 0o755,
        "src/pkg/b.py": 0o644,
    }


def test_the_project_is_found_in_a_src_layout_with_pyproject_dependencies():
    project = build_release.find_project(EXAMPLE, None, None)
    assert project.source == EXAMPLE / "src" and project.requirements == EXAMPLE / "pyproject.toml"
    assert (project.settings_module, project.app_module) == ("bookshelf.settings", "bookshelf")
    dependencies = build_release.pyproject_dependencies(project.requirements.read_text(), project.requirements)
    assert any(d.startswith("psycopg[binary]") for d in dependencies)
    sample = build_release.find_project(REPO_ROOT / "sample_app", None, None)
    assert sample.requirements.name == "requirements.lock" and sample.settings_module == "proj.settings.production"


def stack_file(directory: Path, architecture: str) -> None:
    """A program directory with prod's stack file as `graviton`, on this architecture (Graviton
    instance types with arm64: the config refuses an x86 type there)."""
    (directory / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    config = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
    config["django-stack:instances"]["architecture"] = architecture
    if architecture == "arm64":
        config["django-stack:web"]["instanceType"] = "t4g.small"
        config["django-stack:worker"]["instanceType"] = "t4g.medium"
    (directory / "Pulumi.graviton.yaml").write_text(yaml.safe_dump({"config": config}))


def test_the_stack_names_the_architecture_settings_module_and_artifact_location(tmp_path):
    prod = build_release.stack_target("prod", "r1")
    assert prod == Target("x86_64", "proj.settings.production", "example-django-stack-releases", "releases/r1.tar.gz")
    stack_file(tmp_path, "arm64")
    assert build_release.stack_target("graviton", "r1", tmp_path).architecture == "arm64"


def test_a_stack_file_that_fails_validation_is_refused_in_one_line(tmp_path):
    stack_file(tmp_path, "riscv64")
    with pytest.raises(BuildRefused) as refused:
        build_release.stack_target("graviton", "r1", tmp_path)
    assert str(refused.value).startswith("--stack graviton: django-stack:instances") and "\n" not in str(refused.value)


@mock_aws
def test_upload_puts_the_artifact_and_its_checksum_at_the_stacks_key(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="releases", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    artifact = tmp_path / "r1.tar.gz"
    artifact.write_bytes(b"artifact")
    Path(f"{artifact}.sha256").write_text("digest  r1.tar.gz\n")
    build_release.upload(artifact, Target("x86_64", bucket="releases", key="releases/r1.tar.gz"))
    stored = {
        o["Key"]: s3.get_object(Bucket="releases", Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket="releases")["Contents"]
    }
    assert stored == {"releases/r1.tar.gz": b"artifact", "releases/r1.tar.gz.sha256": b"digest  r1.tar.gz\n"}


def test_the_printed_digest_comes_with_where_the_live_release_pins_it():
    digest = "ab" * 32
    assert build_release.pin_hint("r1", digest, "prod") == (
        f"build-release: sha256 {digest}: the first release of a new stack is app.release r1@sha256:{digest}; "
        f"later: python -m ops deploy --stack prod --release r1 --sha256 {digest}"
    )
    assert "--stack <stack> --release r1" in build_release.pin_hint("r1", digest, None)


def test_the_printed_upload_commands_name_the_stacks_bucket_or_placeholders():
    artifact = Path("build/releases/r1.tar.gz")
    assert build_release.upload_commands(artifact, "b", "releases/r1.tar.gz") == [
        "aws s3 cp build/releases/r1.tar.gz s3://b/releases/r1.tar.gz",
        "aws s3 cp build/releases/r1.tar.gz.sha256 s3://b/releases/r1.tar.gz.sha256",
    ]
    assert "s3://<artifactBucket>/<artifactPrefix>r1.tar.gz" in build_release.upload_commands(artifact, None, None)[0]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--app", "{empty}", "--release", "r1", "--architecture", "arm64"],
            "build-release: --app {empty}: no manage.py in it or in its src/",
        ),
        (
            ["--app", "{example}", "--release", "../r1", "--architecture", "arm64"],
            "build-release: release '../r1' is invalid; use up to 64",
        ),
        (
            ["--app", "{example}", "--release", "r1", "--architecture", "sparc"],
            "python -m ops build-release: error: argument --architecture: invalid choice: 'sparc'",
        ),
        (
            ["--app", "{example}", "--release", "r1"],
            "python -m ops build-release: error: one of the arguments --stack --architecture is required",
        ),
        (
            ["--app", "{example}", "--release", "r1", "--stack", "nope"],
            "build-release: --stack nope: no Pulumi.nope.yaml in ",
        ),
        (
            ["--app", "{example}", "--release", "r1", "--architecture", "arm64", "--upload"],
            "build-release: --upload: needs --stack with app.artifactBucket set",
        ),
        (
            ["--app", "{example}", "--release", "r1", "--architecture", "arm64", "--requirements", "{empty}/none.txt"],
            "build-release: --requirements {empty}/none.txt: no such file",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(arguments, expected, tmp_path, capsys):
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    filled = [a.format(empty=empty, example=EXAMPLE) for a in arguments]
    try:
        code = ops_main(["build-release", *filled, "--out", str(out)])
    except SystemExit as exit_:  # argparse's refusals
        code = exit_.code
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(expected.format(empty=empty))
    assert not out.exists()


def test_the_builder_needs_the_instances_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 3.13\n")
    fake.chmod(0o755)
    with pytest.raises(BuildRefused, match=r"^PYTHON=.*: 3\.13; the instances run 3\.11"):
        build_release.builder_pip(str(fake))
