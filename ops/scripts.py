"""The shell scripts the tool runs on instances: data, built by pure functions, so a test can
diff them and the local executor can run the very same text on real processes. Each is a file
of ops/remote/ (docs/ops-remote-scripts.md) filled by the units' strict template: shellcheck and
mypy read the files' rendered form and the Python parts (scripts/lint.sh).

Rules every script here follows:
- POSIX sh (SSM's AWS-RunShellScript runs the text with /bin/sh, dash on Debian).
- No secret in the text: SSM keeps command text in its history, so the AUTH token and the
  Django key are read ON the instance from the env files (docs/machine-layout.md), and nothing
  prints them (redis-cli gets the password through REDISCLI_AUTH, never argv).
- Paths, units and variables come from the machine contract, userdata/layout.py.
- Anything interpolated from Python is shell-quoted: a value of this call (a release, a role,
  argv, a Python part's text) with shlex, where it stands as a word of its own; a name of the
  contract is refused unless it needs no quoting, since it also stands inside double quotes.
- The Python parts (ops/remote/*.py) take their input through argv, stdin and the environment.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from userdata.layout import (
    APP_BIN,
    APP_ENV,
    APP_SRC,
    BEAT_UNIT,
    DATABASE_PASSWORD_UNIT,
    GROUP,
    GUNICORN_UNIT,
    ONESHOT_UNITS,
    RELEASE_BIN,
    RELEASE_COMMAND_BIN,
    RELEASE_COMMAND_ENV,
    RELEASE_ENV,
    RELEASES_DIR,
    REQUIRED_APP_VARIABLES,
    SECRETS_ENV,
    SECRETS_SOURCE_ENV,
    SECRETS_UNIT,
    SYSTEM_PYTHON,
    UNIT_DIR,
    USER,
    VERSION_ENV,
    WEB_ROLE,
    WORKER_ENV_PREFIX,
    WORKER_ENV_SUFFIX,
    WORKER_ROLE,
    WORKER_UNIT_PREFIX,
    WORKER_UNIT_SUFFIX,
)
from userdata.template import StrictTemplate

CHECK_MARK = "ops-check"  # first field of each result line a verify script prints

# Which checks run on which role, in order. Workers answer `celery inspect ping`; the
# healthcheck round-trip is sent from web instances (where the app enqueues in production).
CHECKS_BY_ROLE: dict[str, tuple[str, ...]] = {
    WEB_ROLE: ("env_file", "services", "redis_ping", "healthcheck"),
    WORKER_ROLE: ("env_file", "services", "redis_ping", "celery_ping"),
}

REMOTE = Path(__file__).parent / "remote"

# The machine contract's names the files use (and the mark of a check's line), by placeholder.
_CONTRACT_NAMES = {
    "app_bin": APP_BIN,
    "app_env": APP_ENV,
    "app_src": APP_SRC,
    "beat_unit": BEAT_UNIT,
    "database_password_unit": DATABASE_PASSWORD_UNIT,
    "group": GROUP,
    "gunicorn_unit": GUNICORN_UNIT,
    "release_bin": RELEASE_BIN,
    "release_command_bin": RELEASE_COMMAND_BIN,
    "release_command_env": RELEASE_COMMAND_ENV,
    "release_env": RELEASE_ENV,
    "releases_dir": RELEASES_DIR,
    "secrets_env": SECRETS_ENV,
    "secrets_source_env": SECRETS_SOURCE_ENV,
    "secrets_unit": SECRETS_UNIT,
    "system_python": SYSTEM_PYTHON,
    "unit_dir": UNIT_DIR,
    "user": USER,
    "version_env": VERSION_ENV,
    "web_role": WEB_ROLE,
    "worker_env_prefix": WORKER_ENV_PREFIX,
    "worker_env_suffix": WORKER_ENV_SUFFIX,
    "worker_unit_prefix": WORKER_UNIT_PREFIX,
    "worker_unit_suffix": WORKER_UNIT_SUFFIX,
    "check_mark": CHECK_MARK,
}
_CONTRACT_LISTS = {"oneshot_units": ONESHOT_UNITS, "required_app_variables": REQUIRED_APP_VARIABLES}


def _contract_word(value: str) -> str:
    if shlex.quote(value) != value:
        raise ValueError(f"contract value {value!r} needs shell quoting; the remote scripts take plain words only")
    return value


@cache
def _contract() -> dict[str, str]:
    values = {name: _contract_word(value) for name, value in _CONTRACT_NAMES.items()}
    values |= {name: " ".join(map(_contract_word, words)) for name, words in _CONTRACT_LISTS.items()}
    values["worker_units"] = _render("worker_units.sh", contract=values)
    return values


def _render(
    name: str,
    code: Mapping[str, str] | None = None,
    contract: Mapping[str, str] | None = None,
    **values: str | Sequence[str],
) -> str:
    """ops/remote/<name> filled: `values` shell-quoted (a sequence as one word each), `code`
    (pieces rendered from ops/remote/ or built here) and the contract's names as they are."""
    quoted = {key: shlex.quote(value) if isinstance(value, str) else shlex.join(value) for key, value in values.items()}
    return _template(name).substitute({**(_contract() if contract is None else contract), **(code or {}), **quoted})


@cache
def _template(name: str) -> StrictTemplate:
    return StrictTemplate((REMOTE / name).read_text())


@cache
def _program(name: str) -> str:
    """A Python part, sent as the text of `python -c` (it is shell-quoted where it is placed)."""
    return (REMOTE / name).read_text()


def _helpers() -> str:
    # Every function runs in its own subshell (see run_check), so loading the environment never
    # leaks from one check into another.
    return _render("helpers.sh")


def _restarted_units(role: str) -> str:
    """Sets $units to what a release switch restarts on this role."""
    return _render(f"restarted_units_{role}.sh")


def verify_script(role: str, *, expect_beat: bool, healthcheck_task: str, check_timeout: int) -> str:
    """One script per instance: every check of its role, one result line each; exit 1 if any
    failed. expect_beat: the instance carries the Beat tag and Beat should be running now."""
    runs = "".join(f"run_check {shlex.quote(check)}\n" for check in CHECKS_BY_ROLE[role])
    checks = _render("checks.sh", broker_ca_py=_program("broker_ca.py"), healthcheck_py=_program("healthcheck.py"))
    return _render(
        "verify.sh",
        code={"helpers": _helpers(), "checks": checks, "runs": runs},
        role=role,
        expect_beat="yes" if expect_beat else "no",
        healthcheck_task=healthcheck_task,
        check_timeout=str(check_timeout),
    )


def beat_script(action: str) -> str:
    """Stops or starts Beat and prints its resulting state; fails unless the state is the one
    asked for (a Beat that dies right after start is caught here, not at the next tick)."""
    wanted = {"stop": "inactive", "start": "active"}[action]
    return _render("beat.sh", action=action, wanted=wanted)


def tasks_in_flight_script(check_timeout: int) -> str:
    """Asks every worker of the broker (a broadcast, so one instance is enough) for its active
    and reserved tasks; prints `active <json>` and `reserved <json>`."""
    return _render("tasks_in_flight.sh", code={"helpers": _helpers()}, check_timeout=str(check_timeout))


def current_release_script() -> str:
    return _render("current_release.sh")


def install_release_script(release: str, sha256: str) -> str:
    """Installs (downloads and builds) a release without touching the running one: its artifact
    only with this digest, and an installed copy only if it was installed with it."""
    return _render("install_release.sh", release=release, digest=sha256)


def release_command_script(release: str) -> str:
    """app.releaseCommand for an installed release that is not active yet: the machine script
    app-release-command.service runs at boot, as the app user with the app units' env files but
    that release's version.env and venv (its lock makes a concurrent boot wait, not run it)."""
    return _render("release_command.sh", code={"helpers": _helpers()}, release=release)


def exec_script(argv: list[str]) -> str:
    """A one-off command as the app user in the current release, with the app units' env files
    and its venv first on PATH; `manage.py ...` runs with the venv's python."""
    words = ["python", *argv] if argv[0] == "manage.py" else argv
    return _render("exec.sh", code={"helpers": _helpers()}, command=words)


def switch_release_script(role: str, release: str) -> str:
    """Points `current` at the release and restarts the role's units so they run it. Workers
    stop warm (the unit's TimeoutStopSec outlasts the hard time limit), so no task is killed."""
    code = {"helpers": _helpers(), "restarted_units": _restarted_units(role)}
    return _render("switch_release.sh", code=code, role=role, release=release)


def stop_timeouts_script(role: str) -> str:
    """Prints `UNIT SECONDS` for each unit a switch restarts: the TimeoutStopSec= the program
    rendered into it, which a warm restart may take before systemd kills a running task."""
    code = {"helpers": _helpers(), "restarted_units": _restarted_units(role)}
    return _render("stop_timeouts.sh", code=code, role=role)


def refresh_secrets_script(role: str) -> str:
    """Token rotation on one instance: fetch the secrets again (a reload of app-secrets.service
    reads the token now in Parameter Store), then restart the role's units once so they load it.
    Not a restart of app-secrets: its Requires= dependents would restart with it (twice in all),
    and stay stopped if the fetch failed. A failed fetch changes nothing and says so: the units
    keep running on the token they have, which ElastiCache still accepts under ROTATE. Workers
    stop warm, as in a release switch."""
    code = {"helpers": _helpers(), "restarted_units": _restarted_units(role)}
    return _render("refresh_secrets.sh", code=code, role=role)


def refresh_database_password_script() -> str:
    """database.mode rds: app-database-password.service run once more (started, never restarted),
    so the password file holds the secret's current version; fails unless that run read it."""
    return _render("refresh_database_password.sh")


def token_check_script(role: str, *, expect_beat: bool) -> str:
    """Fails unless every running app unit of this instance was started with the token now in
    Parameter Store: the broker URL in each main process's own environment, compared on the
    instance (nothing secret is printed or sent back). With the old token this fails, although
    ElastiCache still accepts both during the rotation."""
    code = {
        "helpers": _helpers(),
        "restarted_units": _restarted_units(role),
        "beat": _render("beat_unit.sh") if expect_beat else "",
    }
    return _render("token_check.sh", code=code, role=role, token_check_py=_program("token_check.py"))


def every_script() -> dict[str, str]:
    """Each script for each role, with representative values: what scripts/lint.sh shellchecks."""
    scripts = {
        "beat-stop": beat_script("stop"),
        "beat-start": beat_script("start"),
        "tasks-in-flight": tasks_in_flight_script(5),
        "current-release": current_release_script(),
        "install-release": install_release_script("2026.11.25-1", "ab" * 32),
        "release-command": release_command_script("2026.11.25-1"),
        "exec": exec_script(["manage.py", "migrate", "--noinput"]),
        "refresh-database-password": refresh_database_password_script(),
    }
    for role in CHECKS_BY_ROLE:
        for beat in (False, True):
            suffix = f"{role}-beat" if beat else role
            scripts[f"verify-{suffix}"] = verify_script(
                role, expect_beat=beat, healthcheck_task="myapp.tasks.healthcheck", check_timeout=5
            )
            scripts[f"token-check-{suffix}"] = token_check_script(role, expect_beat=beat)
        scripts[f"switch-release-{role}"] = switch_release_script(role, "2026.11.25-1")
        scripts[f"stop-timeouts-{role}"] = stop_timeouts_script(role)
        scripts[f"refresh-secrets-{role}"] = refresh_secrets_script(role)
    return scripts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.scripts", description=__doc__.splitlines()[0])
    parser.add_argument("--render-all", metavar="DIR", type=Path, required=True, help="write every script to DIR")
    directory = parser.parse_args().render_all
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in every_script().items():
        (directory / f"{name}.sh").write_text(text)


if __name__ == "__main__":
    main()
