"""The scripts as text: valid POSIX sh (SSM's AWS-RunShellScript runs them with /bin/sh, dash
on Debian), free of anything secret, and built only from the contract's names. They run for
real in tests/e2e/test_ops_verify.py."""

from __future__ import annotations

import subprocess

import pytest

from ops.scripts import (
    beat_script,
    current_release_script,
    install_release_script,
    refresh_secrets_script,
    stop_timeouts_script,
    switch_release_script,
    tasks_in_flight_script,
    token_check_script,
    verify_script,
)

ALL_SCRIPTS = {
    "verify web": verify_script(
        "web", expect_beat=False, healthcheck_task="myapp.tasks.healthcheck_task", check_timeout=5
    ),
    "verify beat worker": verify_script("worker", expect_beat=True, healthcheck_task="x", check_timeout=5),
    "beat stop": beat_script("stop"),
    "beat start": beat_script("start"),
    "tasks in flight": tasks_in_flight_script(5),
    "current release": current_release_script(),
    "install": install_release_script("2026.11.25-2", "ab" * 32),
    "switch web": switch_release_script("web", "2026.11.25-2"),
    "switch worker": switch_release_script("worker", "2026.11.25-2"),
    "stop timeouts web": stop_timeouts_script("web"),
    "stop timeouts worker": stop_timeouts_script("worker"),
    "refresh secrets web": refresh_secrets_script("web"),
    "token check beat worker": token_check_script("worker", expect_beat=True),
}


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_script_is_valid_posix_sh(name: str) -> None:
    checked = subprocess.run(["/bin/sh", "-n"], input=ALL_SCRIPTS[name], capture_output=True, text=True)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert "[[" not in ALL_SCRIPTS[name] and "pipefail" not in ALL_SCRIPTS[name]  # bash only


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_script_never_carries_or_prints_a_secret(name: str) -> None:
    # SSM keeps command text: secrets are read on the instance, from the files the contract names.
    script = ALL_SCRIPTS[name]
    for secret_name in ("REDISCLI_AUTH", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY"):
        for line in script.splitlines():
            assert f'echo "${secret_name}' not in line and f"echo ${secret_name}" not in line
    assert "rediss://:" not in script
    for line in script.splitlines():
        if "redis-cli" in line:  # the password reaches redis-cli through REDISCLI_AUTH, never argv
            assert " -a " not in line and "--pass" not in line and "--user" not in line


def test_verify_reads_the_secret_env_file_only_on_the_instance() -> None:
    script = ALL_SCRIPTS["verify web"]
    assert ". /etc/app/app.env\n  . /srv/app/current/version.env\n  . /run/app-secrets/secrets.env\n" in script
    assert "REDISCLI_AUTH=${auth#:}\n  export REDISCLI_AUTH\n" in script


def test_verify_settings_are_quoted_values() -> None:
    script = verify_script("web", expect_beat=False, healthcheck_task="tasks.ping; rm -rf /", check_timeout=5)
    assert "HEALTHCHECK_TASK='tasks.ping; rm -rf /'\n" in script


def test_each_role_runs_its_checks_in_order() -> None:
    assert ALL_SCRIPTS["verify web"].endswith(
        "run_check env_file\nrun_check services\nrun_check redis_ping\nrun_check healthcheck\nexit $status\n"
    )
    assert ALL_SCRIPTS["verify beat worker"].endswith(
        "run_check env_file\nrun_check services\nrun_check redis_ping\nrun_check celery_ping\nexit $status\n"
    )
    assert "EXPECT_BEAT=yes\n" in ALL_SCRIPTS["verify beat worker"]
