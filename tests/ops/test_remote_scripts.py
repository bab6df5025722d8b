"""The remote scripts as files (ops/remote/): what a call substitutes stays one shell word however
hostile it is, a contract name that would need quoting and a missing value are refused, and every
file is used. The scripts run on real systemd and processes in tests/e2e/test_ops_verify.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import scripts
from userdata.layout import GROUP, GUNICORN_UNIT, USER

# Quotes of both kinds, a command substitution, a separator and a newline.
HOSTILE = "r1'; touch pwned; '\"$(touch pwned)\"\nx"
RECORDER = """#!/usr/bin/python3
import json, os, sys
with open(LOG, "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The contract's paths under tmp_path, with the commands the scripts run standing in as
    recorders of their argv (calls.jsonl): the shell is real, nothing else runs."""
    log = tmp_path / "calls.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = RECORDER.replace("LOG", repr(str(log)))
    for command in ("python3", "systemctl", "setpriv"):
        (bin_dir / command).write_text(recorder)
        (bin_dir / command).chmod(0o755)
    names = dict(scripts._CONTRACT_NAMES)
    for name, value in names.items():
        if value.startswith("/") and name != "system_python":
            names[name] = str(tmp_path / value.lstrip("/"))
    names["system_python"] = str(bin_dir / "python3")
    for env in ("app_env", "version_env", "secrets_env", "release_env"):
        Path(names[env]).parent.mkdir(parents=True, exist_ok=True)
        Path(names[env]).write_text("")
    Path(names["app_src"]).mkdir(parents=True)
    monkeypatch.setattr(scripts, "_CONTRACT_NAMES", names)
    scripts._contract.cache_clear()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield tmp_path
    scripts._contract.cache_clear()


def run(machine: Path, script: str) -> list[list[str]]:
    done = subprocess.run(["/bin/sh", "-c", script], cwd=machine, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert not list(machine.rglob("pwned")), "a substituted value ran as code"
    return [json.loads(line) for line in (machine / "calls.jsonl").read_text().splitlines()]


def test_a_hostile_release_name_and_digest_reach_app_release_as_one_argument_each(machine: Path) -> None:
    release_bin = scripts._contract()["release_bin"]
    calls = run(machine, scripts.install_release_script(HOSTILE, HOSTILE))
    assert calls == [["python3", release_bin, "install", HOSTILE, "--sha256", HOSTILE]]


def test_a_hostile_release_name_is_activated_as_one_argument_then_the_units_restart(machine: Path) -> None:
    calls = run(machine, scripts.switch_release_script("web", HOSTILE))
    release_bin = scripts._contract()["release_bin"]
    assert calls[:2] == [["python3", release_bin, "activate", HOSTILE], ["systemctl", "restart", GUNICORN_UNIT]]


def test_exec_passes_each_hostile_argument_as_one_word(machine: Path) -> None:
    calls = run(machine, scripts.exec_script(["manage.py", "shell", "-c", HOSTILE]))
    assert calls == [
        [
            "setpriv",
            f"--reuid={USER}",
            f"--regid={GROUP}",
            "--clear-groups",
            "--",
            "python",
            "manage.py",
            "shell",
            "-c",
            HOSTILE,
        ]
    ]


def test_a_contract_name_that_would_need_quoting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Contract names also stand inside double-quoted strings, where shell quotes would be literal.
    monkeypatch.setitem(scripts._CONTRACT_NAMES, "beat_unit", "celery beat.service")
    scripts._contract.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"'celery beat\.service' needs shell quoting"):
            scripts.beat_script("stop")
    finally:
        scripts._contract.cache_clear()


def test_a_placeholder_without_a_value_is_refused() -> None:
    with pytest.raises(KeyError, match="release"):
        scripts._render("install_release.sh")


def test_every_script_renders_every_file_of_ops_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    read: set[str] = set()
    for loader in ("_template", "_program"):
        original = getattr(scripts, loader).__wrapped__
        monkeypatch.setattr(scripts, loader, lambda name, original=original: read.add(name) or original(name))
    scripts._contract.cache_clear()
    try:
        scripts.every_script()
    finally:
        scripts._contract.cache_clear()
    assert read == {path.name for path in scripts.REMOTE.iterdir()}
