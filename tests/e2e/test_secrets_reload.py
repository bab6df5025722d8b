"""rotate-token's secrets refresh under a real systemd (252, Debian 12's): the rendered units'
[Unit] sections (Requires=/After= on app-secrets.service) in a private `systemd --user` manager
(e2e_harness/user_systemd.py), app-secrets.service running the real app-fetch-secrets against
moto's Parameter Store as its ExecStart= and ExecReload=, and the ops tool's own refresh script
run as SSM would run it (the worker's with the machine's /etc/app mounted, through the harness's
launcher). The app units' processes are stand-ins (a sleep that loads the secrets env file, and
counts its starts): what is under test is what systemd restarts, not gunicorn or Celery.

- A new token reaches every app unit with exactly one restart each (a restart of app-secrets
  restarted its Requires= dependents a second time).
- With Parameter Store failing, the refresh fails and says so, and gunicorn and the workers keep
  running, unrestarted, on the token they had (a restart of app-secrets left them inactive).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from e2e_harness.machine import LAUNCHER
from e2e_harness.parameter_store import CREDENTIALS, ParameterStore
from e2e_harness.units import parse_env_file
from e2e_harness.user_systemd import UserSystemd, user_systemd

from ops.scripts import refresh_secrets_script
from userdata.layout import (
    ETC_DIR,
    FETCH_SECRETS_BIN,
    GUNICORN_UNIT,
    RELEASE_COMMAND_UNIT,
    RELEASE_UNIT,
    SECRETS_SOURCE_ENV,
    SECRETS_UNIT,
    UNIT_DIR,
    WORKER_ENV_PREFIX,
    WORKER_UNIT_PREFIX,
)
from userdata.render import written_files

REPO = Path(__file__).resolve().parents[2]
ONESHOT = "[Service]\nType=oneshot\nRemainAfterExit=yes\n"


def rendered(prod, role: str) -> dict[str, str]:
    """Path -> content of the prod stack's first instance of `role` (not the Beat worker)."""
    (instance,) = [
        i
        for i in prod.instances
        if i.tags["Role"] == role and "celery-beat" not in i.tags and i.tags["Name"][-1] == "0"
    ]
    return {file.path: file.content for file in written_files(instance.user_data)}


def directive(text: str, key: str) -> str:
    (value,) = re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)
    return value


def unit_section(text: str) -> str:
    return text.split("\n[Service]")[0] + "\n"


@pytest.fixture
def machine(prod, tmp_path: Path):
    """A web unit and the worker units, app-secrets and app-release, started under real systemd."""
    web, worker = rendered(prod, "web"), rendered(prod, "worker")
    source = parse_env_file(web[SECRETS_SOURCE_ENV])
    store = ParameterStore(source["AWS_REGION"], tmp_path / "moto.log")
    store.start()
    try:
        names = [source["AUTH_TOKEN_PARAMETER"], source["DJANGO_SECRET_KEY_PARAMETER"]]
        names += [item.partition("=")[2] for item in source.get("SECRET_PARAMETERS", "").split(",") if item]
        for name in names:
            store.put_secret(name, "Old" + "0" * 32 if name == source["AUTH_TOKEN_PARAMETER"] else "value")
        secrets_env = tmp_path / "secrets.env"
        overrides = {**CREDENTIALS, "AWS_ENDPOINT_URL_SSM": store.endpoint, "SECRETS_ENV_FILE": str(secrets_env)}
        (tmp_path / "secrets-source.env").write_text(
            web[SECRETS_SOURCE_ENV] + "".join(f"{k}={v}\n" for k, v in overrides.items())
        )
        etc_app = tmp_path / "etc-app"  # the worker's /etc/app: its per-queue env files
        etc_app.mkdir()
        for path, content in worker.items():
            if path.startswith(WORKER_ENV_PREFIX):
                (etc_app / Path(path).name).write_text(content)
        with user_systemd(tmp_path / "systemd") as systemd:
            fetch = str(REPO / "userdata/files/app-fetch-secrets")
            secrets_unit = web[f"{UNIT_DIR}/{SECRETS_UNIT}"]
            units = {
                SECRETS_UNIT: unit_section(secrets_unit)
                + ONESHOT
                + f"EnvironmentFile={tmp_path / 'secrets-source.env'}\n"
                + f"ExecStart={directive(secrets_unit, 'ExecStart').replace(FETCH_SECRETS_BIN, fetch)}\n"
                + f"ExecReload={directive(secrets_unit, 'ExecReload').replace(FETCH_SECRETS_BIN, fetch)}\n",
                # Installing the release and running its release command are not what this tests.
                **{
                    unit: unit_section(web[f"{UNIT_DIR}/{unit}"]) + ONESHOT + "ExecStart=/bin/true\n"
                    for unit in (RELEASE_UNIT, RELEASE_COMMAND_UNIT)
                },
            }
            app_units = {f"{UNIT_DIR}/{GUNICORN_UNIT}": web} | {
                path: worker for path in worker if path.startswith(f"{UNIT_DIR}/{WORKER_UNIT_PREFIX}")
            }
            for path, files in app_units.items():
                text = files[path]
                units[Path(path).name] = (
                    unit_section(text)
                    # exec, not simple: `systemctl start` and `restart` return once the stand-in's
                    # binary runs, so its /proc/PID/environ is the unit's, not the forked manager's.
                    + "[Service]\nType=exec\n"
                    + f"EnvironmentFile={secrets_env}\n"
                    + f"ExecStartPre=/bin/sh -c 'echo started >> {tmp_path}/starts-%n'\n"
                    + "ExecStart=/bin/sleep infinity\n"
                    + f"Restart={directive(text, 'Restart')}\nRestartSec={directive(text, 'RestartSec')}\n"
                )
            for name, text in units.items():
                (systemd.unit_dir / name).write_text(text)
            systemd.systemctl("daemon-reload")
            app = [Path(path).name for path in app_units]
            systemd.systemctl("start", *app)
            yield Machine(systemd, store, tmp_path, app, source["AUTH_TOKEN_PARAMETER"], etc_app)
    finally:
        store.stop()


class Machine:
    def __init__(
        self, systemd: UserSystemd, store: ParameterStore, base: Path, app: list[str], token_name: str, etc_app: Path
    ) -> None:
        self.systemd, self.store, self.base, self.app = systemd, store, base, app
        self.token_name, self.etc_app = token_name, etc_app

    def starts(self) -> dict[str, int]:
        return {unit: len((self.base / f"starts-{unit}").read_text().splitlines()) for unit in self.app}

    def state(self) -> dict[str, tuple[str, str, str]]:
        """unit -> (ActiveState, MainPID, NRestarts)"""
        return {u: tuple(self.systemd.show(u, p) for p in ("ActiveState", "MainPID", "NRestarts")) for u in self.app}  # type: ignore[misc]

    def tokens(self) -> dict[str, str]:
        """unit -> the password in the broker URL its main process was started with."""
        found = {}
        for unit in self.app:
            environ = Path(f"/proc/{self.systemd.show(unit, 'MainPID')}/environ").read_bytes().split(b"\0")
            url = next(item for item in environ if item.startswith(b"CELERY_BROKER_URL=")).decode()
            found[unit] = re.search(r"rediss://:([^@]*)@", url).group(1)  # type: ignore[union-attr]
        return found

    def refresh(self, role: str) -> subprocess.CompletedProcess[str]:
        """The ops tool's script as SSM runs it: /bin/sh, root, the machine's /etc/app."""
        spec = {
            "hostname": f"prod-{role}-0",
            "scratch": str(self.base / f"scratch-{role}"),
            "binds": [[str(self.etc_app), ETC_DIR]],
            "uid": None,
            "gid": None,
            "cwd": "/",
            "umask": "0022",
            "argv": ["/bin/sh", "-c", refresh_secrets_script(role)],
            "env": {"PATH": f"{self.systemd.shim(self.base / 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin"},
        }
        (self.base / f"scratch-{role}").mkdir(exist_ok=True)
        (self.base / f"spec-{role}.json").write_text(json.dumps(spec))
        return subprocess.run(
            ["unshare", "--mount", "--uts", "--propagation", "private", "/usr/bin/python3", str(LAUNCHER)]
            + [str(self.base / f"spec-{role}.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )


NEW = "New" + "1" * 32


def test_a_new_token_reaches_every_unit_with_one_restart_each(machine: Machine) -> None:
    assert set(machine.tokens().values()) == {"Old" + "0" * 32}
    before = machine.state()
    assert machine.starts() == dict.fromkeys(machine.app, 1)
    machine.store.put_secret(machine.token_name, NEW)
    results = [machine.refresh(role) for role in ("web", "worker")]
    assert machine.starts() == dict.fromkeys(machine.app, 2)  # exactly one restart each
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("secrets fetched again; restarted: ")
    after = machine.state()
    for unit in machine.app:
        assert after[unit][0] == "active" and after[unit][1] != before[unit][1] and after[unit][2] == "0", unit
    assert set(machine.tokens().values()) == {NEW}


def test_parameter_store_failing_leaves_the_units_running_on_the_token_they_have(machine: Machine) -> None:
    before, secrets = machine.state(), (machine.base / "secrets.env").read_text()
    machine.store.client("ssm").delete_parameter(Name=machine.token_name)  # the fetch now fails
    results = {role: machine.refresh(role) for role in ("web", "worker")}
    assert machine.state() == before  # active, same main process, never restarted
    assert machine.starts() == dict.fromkeys(machine.app, 1)
    for role, units in (("web", [GUNICORN_UNIT]), ("worker", [u for u in machine.app if u != GUNICORN_UNIT])):
        assert results[role].returncode == 1
        assert results[role].stderr.splitlines()[-1] == (
            f"fetching the secrets from Parameter Store failed (journalctl -u {SECRETS_UNIT}); nothing was "
            f"restarted: {' '.join(units)} still run on the token they had"
        )
    assert (machine.base / "secrets.env").read_text() == secrets
    assert set(machine.tokens().values()) == {"Old" + "0" * 32}
    assert machine.systemd.show(SECRETS_UNIT, "ActiveState") == "active"
