"""vm-test probe: watches the boot the program's user-data drives, checks it from inside the guest,
prints one marked line per finding on the serial console, then powers the VM off.

Lines look like `VMTEST <key> <json>`; tests/vm reads them from the console file. The probe only
observes and exercises what the program installed; every judgement is made by the tests.
Scenario (kernel command line `vmtest.scenario=`): `restart` adds the kill -9 / redelivery and the
warm-shutdown checks on the default queue's worker.

Paths, units and names come from the machine contract: the image installs userdata/layout.py
beside this file (as userdata/layout.py), so the import is the same here and in the guest.
"""

import json
import os
import subprocess
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import yaml

from userdata import layout

CONSOLE = "/dev/ttyS0"
USER_DATA = Path("/var/lib/cloud/instance/user-data.txt")
SECRETS_ENV = Path(layout.SECRETS_ENV)
APP_ENV_FILES = (layout.APP_ENV, layout.SECRETS_ENV)
APP_PYTHON = f"{layout.APP_BIN}/python"
APP_SIDE = "/usr/local/lib/vm-test/app_side.py"
# The queues of the stack the VM tests boot (the prod stack's).
WORKER_UNIT = layout.worker_unit("default")
KNOWN_UNITS = (
    *layout.ONESHOT_UNITS,
    layout.GUNICORN_UNIT,
    WORKER_UNIT,
    layout.worker_unit("long"),
    layout.BEAT_UNIT,
)
LEDGER_DB = 2
TASK_SECONDS = 8.0


def emit(key: str, value: object) -> None:
    line = f"VMTEST {key} {json.dumps(value, separators=(',', ':'))}\n".encode()
    fd = os.open(CONSOLE, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def wait_until(condition, timeout: float, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def enabled_units() -> list[str]:
    """The units the program's user-data enables (its `systemctl enable --now` runcmd)."""
    if not USER_DATA.exists():
        return []
    for command in (yaml.safe_load(USER_DATA.read_text()) or {}).get("runcmd", []):
        if command[:3] == ["systemctl", "enable", "--now"]:
            return list(command[3:])
    return []


def states(units: list[str]) -> dict[str, str]:
    out = run("systemctl", "is-active", *units).stdout.split()
    return dict(zip(units, out))


def show(unit: str) -> dict[str, str]:
    lines = run("systemctl", "show", unit).stdout.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def process_status(pid: str) -> dict[str, str]:
    """What the kernel enforces on the running process (not just what the unit file says)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    wanted = ("Uid", "Gid", "NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if k in wanted}


def secrets() -> dict[str, str]:
    values = {}
    for line in SECRETS_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value.strip("'")
    return values


def redis_cli(*args: str, db: int = LEDGER_DB, password: bool = True) -> str:
    broker = urlsplit(secrets()["CELERY_BROKER_URL"])
    auth = ["--pass", broker.password or ""] if password else []
    command = [
        "redis-cli",
        "--tls",
        "--cacert",
        "/etc/ssl/certs/ca-certificates.crt",
        "-h",
        broker.hostname or "",
        "-p",
        str(broker.port),
        *auth,
        "--no-auth-warning",
        "-n",
        str(db),
        *args,
    ]
    result = run(*command, timeout=30)
    return (result.stdout + result.stderr).strip()


def ledger_count(kind: str, key: str) -> int:
    value = redis_cli("HGET", f"ledger:{kind}", key)
    return int(value) if value.isdigit() else 0


def app_side(*args: str) -> dict[str, object]:
    """Runs app_side.py as the app user with the units' own environment files."""
    properties = [
        "-p",
        f"User={layout.USER}",
        "-p",
        f"Group={layout.GROUP}",
        "-p",
        f"WorkingDirectory={layout.APP_SRC}",
    ]
    for env_file in APP_ENV_FILES:
        properties += ["-p", f"EnvironmentFile={env_file}"]
    result = run(
        "systemd-run", "--quiet", "--wait", "--pipe", "--collect", *properties, APP_PYTHON, APP_SIDE, *args, timeout=240
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-2000:], "rc": result.returncode}
    return json.loads(result.stdout.strip().splitlines()[-1])


def http(method: str, path: str, host: str) -> dict[str, object]:
    request = Request(f"http://127.0.0.1:8000{path}", method=method, headers={"Host": host})
    try:
        with urlopen(request, timeout=60) as response:
            return {"status": response.status, "body": json.loads(response.read())}
    except Exception as error:  # the test reports whatever went wrong
        status = getattr(error, "code", None)
        return {"status": status, "error": repr(error)}


def check_cloud_init() -> None:
    result = run("cloud-init", "status", "--wait", "--long", timeout=600)
    problems = [
        line
        for log in ("/var/log/cloud-init.log", "/var/log/cloud-init-output.log")
        for line in Path(log).read_text(errors="replace").splitlines()
        if any(word in line for word in ("WARNING", "ERROR", "Traceback", "[WARN]", "[ERR]"))
    ]
    emit("cloud-init", {"rc": result.returncode, "status": result.stdout, "problems": problems})


def check_units(units: list[str]) -> None:
    emit("units", states(sorted(set(units) | set(KNOWN_UNITS))))
    for unit in units:
        properties = show(unit)
        emit(
            "show", {"unit": unit, "properties": properties, "process": process_status(properties.get("MainPID", "0"))}
        )


def check_redis() -> None:
    emit("redis", {"auth_ping": redis_cli("PING"), "anonymous_ping": redis_cli("PING", password=False)})


def check_web() -> None:
    app_env = dict(line.split("=", 1) for line in Path(layout.APP_ENV).read_text().splitlines() if "=" in line)
    host = app_env["DJANGO_ALLOWED_HOSTS"].strip("'").split(",")[0]
    health = http("GET", "/healthz", host)
    enqueued = http("POST", "/tasks/healthcheck", host)
    queued = redis_cli("LRANGE", "default", "0", "-1", db=0)
    emit("web", {"healthz": health, "enqueue": enqueued, "queued_messages": queued})


def check_roundtrip() -> None:
    result = app_side("roundtrip")
    task_id = str(result.get("task_id", ""))
    emit("roundtrip", {**result, "ledger": ledger_count("healthcheck", task_id)})


def check_beat() -> None:
    count = wait_until(lambda: int(redis_cli("LLEN", "ledger:beat:log") or 0), timeout=60, interval=2)
    emit("beat", {"heartbeats": count})


def main_pid() -> str:
    return show(WORKER_UNIT)["MainPID"]


def check_restart() -> None:
    """kill -9 of the worker's main process mid-task: systemd restarts it, the broker redelivers."""
    key = f"kill-{uuid.uuid4().hex[:8]}"
    enqueued = app_side("enqueue", key, str(TASK_SECONDS))
    started = wait_until(lambda: ledger_count("started", key), timeout=120) if "task_id" in enqueued else 0
    if not started:
        emit("restart", {"task": enqueued, "started_before_kill": started})
        return
    before = show(WORKER_UNIT)
    os.kill(int(before["MainPID"]), 9)
    killed_at = time.monotonic()

    def restarted() -> dict[str, str] | None:
        now = show(WORKER_UNIT)
        fresh = now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])
        return now if fresh and int(now["NRestarts"]) > int(before["NRestarts"]) else None

    after = wait_until(restarted, timeout=120) or show(WORKER_UNIT)
    executed = wait_until(lambda: ledger_count("executed", key), timeout=240, interval=2)
    emit(
        "restart",
        {
            "task": enqueued,
            "started_before_kill": started,
            "old_pid": before["MainPID"],
            "new_pid": after["MainPID"],
            "restarts_before": before["NRestarts"],
            "restarts_after": after["NRestarts"],
            "active_after": after["ActiveState"],
            "starts": ledger_count("started", key),
            "executions": executed,
            "seconds_to_redelivered_result": round(time.monotonic() - killed_at, 1),
        },
    )


def check_warm_stop() -> None:
    """`systemctl stop` returns only after the running task finished (warm shutdown)."""
    key = f"stop-{uuid.uuid4().hex[:8]}"
    enqueued = app_side("enqueue", key, str(TASK_SECONDS))
    started = wait_until(lambda: ledger_count("started", key), timeout=120) if "task_id" in enqueued else 0
    if not started:
        emit("warm-stop", {"task": enqueued, "started": started})
        return
    begin = time.monotonic()
    stop = run("systemctl", "stop", WORKER_UNIT)
    stop_seconds = round(time.monotonic() - begin, 1)
    executed_when_stopped = ledger_count("executed", key)
    journal = run("journalctl", "-u", WORKER_UNIT, "-o", "cat", "--no-pager").stdout
    emit(
        "warm-stop",
        {
            "task": enqueued,
            "started": started,
            "stop_rc": stop.returncode,
            "stop_seconds": stop_seconds,
            "executed_when_stop_returned": executed_when_stopped,
            "result": show(WORKER_UNIT).get("Result"),
            "warm_shutdown_logged": "warm shutdown" in journal.lower(),
        },
    )


def probe() -> None:
    scenario = next(
        (
            part.split("=", 1)[1]
            for part in Path("/proc/cmdline").read_text().split()
            if part.startswith("vmtest.scenario=")
        ),
        "",
    )
    emit("start", {"uptime": uptime(), "scenario": scenario})
    units = wait_until(enabled_units, timeout=600)
    ready = wait_until(lambda: all(s == "active" for s in states(units).values()), timeout=600)
    emit("ready", {"uptime": uptime(), "all_active": bool(ready), "units": units})
    check_cloud_init()
    check_units(units)
    check_redis()
    if layout.GUNICORN_UNIT in units:
        check_web()
    if WORKER_UNIT in units:
        check_roundtrip()
    if layout.BEAT_UNIT in units:
        check_beat()
    if scenario == "restart":
        check_restart()
        check_warm_stop()
    emit(
        "boot-timing",
        {
            "blame": run("systemd-analyze", "blame").stdout.splitlines()[:12],
            "cloud_init": run("cloud-init", "analyze", "blame").stdout.splitlines()[:30],
            "chain": run("systemd-analyze", "critical-chain").stdout.splitlines()[:25],
        },
    )


def main() -> None:
    try:
        probe()
    except Exception:
        emit("probe-error", traceback.format_exc())
    finally:
        emit("done", {"uptime": uptime()})
        run("systemctl", "poweroff", "--no-block")


if __name__ == "__main__":
    main()
