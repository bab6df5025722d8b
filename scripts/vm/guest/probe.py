"""vm-test probe: watches the boot the program's user-data drives, checks it from inside the guest,
prints one marked line per finding on the serial console, then powers the VM off.

Lines look like `VMTEST <key> <json>`; tests/vm reads them from the console file. The probe only
observes and exercises what the program installed; every judgement is made by the tests.
Scenario (the boot's test data, vmtest_data.py): `restart` adds the kill -9 / redelivery and the
warm-shutdown checks on the default queue's worker, then warm termination (the IMDS stand-in
reports the target lifecycle state `Terminated` with a task running; the program's
app-warm-stop agent must stop the Celery units warm, then complete the lifecycle action);
`deploy` runs the ops tool's install and switch scripts as SSM's AWS-RunShellScript would
(root, /bin/sh); `bookshelf` (examples/bookshelf, its database on the host) reports the release
command's run and, on web, a database-backed page and a hashed static file through gunicorn;
`boot-failed` waits for the program's app-boot-failed@ unit a failed boot starts, then reports.
The boot's data `timing` (bench/vm_boot.py) reports where the boot's time went (`boot-timing`)
instead of the program's checks.

Paths, units and names come from the machine contract: the image installs userdata/layout.py
beside this file (as userdata/layout.py), so the import is the same here and in the guest.
"""

import json
import os
import re
import subprocess
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import yaml
from program_files import env_file, redis_cli_command
from vmtest_data import boot_data

from userdata import layout

CONSOLE = "/dev/ttyS0"
USER_DATA = Path("/var/lib/cloud/instance/user-data.txt")
SECRETS_ENV = Path(layout.SECRETS_ENV)
APP_ENV_FILES = (layout.APP_ENV, layout.VERSION_ENV, layout.SECRETS_ENV)  # the app units' own
APP_SRC = layout.APP_SRC
APP_PYTHON = f"{layout.APP_BIN}/python"
APP_SIDE = "/usr/local/lib/vm-test/app_side.py"
APP_ROOT = Path(layout.APP_ROOT)
AWS_ENV = Path("/etc/vm-test/aws.env")
AWS_REQUESTS = Path("/run/vm-test/aws-requests.jsonl")
# What the guest's IMDS stand-in reports as the instance's target lifecycle state (aws_standin.py).
LIFECYCLE_STATE = Path("/run/vm-test/target-lifecycle-state")
IMDS = "http://169.254.169.254"
PROBE_UNIT = "test-probe.service"  # this script's own unit (build-rootfs.sh)
AGENT_UNIT = layout.SSM_AGENT_UNIT
LOG_AGENT_UNIT = layout.CLOUDWATCH_AGENT_UNIT
# Where amazon-cloudwatch-agent-ctl fetch-config keeps a file: config (the stand-in does the same).
LOG_AGENT_CONFIG = Path("/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_cloudwatch-agent.json")
CLOUD_INIT_OUTPUT = Path("/var/log/cloud-init-output.log")
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
    """The units the program's user-data enables (its layout.ENABLE_UNITS runcmd)."""
    if not USER_DATA.exists():
        return []
    for command in (yaml.safe_load(USER_DATA.read_text()) or {}).get("runcmd", []):
        if tuple(command[: len(layout.ENABLE_UNITS)]) == layout.ENABLE_UNITS:
            return list(command[len(layout.ENABLE_UNITS) :])
    return []


def states(units: list[str]) -> dict[str, str]:
    out = run("systemctl", "is-active", *units).stdout.split()
    return dict(zip(units, out))


def settled(units: list[str]) -> str | None:
    """ "active" once every unit is; "failed" once one failed and cloud-init has finished (it
    will not start them again); None while the boot is still under way."""
    found = states(units).values()
    if all(state == "active" for state in found):
        return "active"
    if "failed" in found and Path("/var/lib/cloud/instance/boot-finished").exists():
        return "failed"
    return None


def journal(unit: str) -> list[str]:
    return run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout.splitlines()[-25:]


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
    return env_file(SECRETS_ENV)


def redis_cli(*args: str, db: int = LEDGER_DB, password: bool = True) -> str:
    broker = urlsplit(secrets()["CELERY_BROKER_URL"])
    secret = (broker.password or "") if password else None
    result = run(*redis_cli_command(broker.hostname or "", str(broker.port), db, secret, *args), timeout=30)
    return (result.stdout + result.stderr).strip()


def ledger_count(kind: str, key: str) -> int:
    value = redis_cli("HGET", f"ledger:{kind}", key)
    return int(value) if value.isdigit() else 0


def app_side(*args: str) -> dict[str, object]:
    """Runs app_side.py as the app user with the units' own environment files."""
    properties = ["-p", f"User={layout.USER}", "-p", f"Group={layout.GROUP}", "-p", f"WorkingDirectory={APP_SRC}"]
    for path in APP_ENV_FILES:
        properties += ["-p", f"EnvironmentFile={path}"]
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


def check_units(units: list[str]) -> dict[str, dict[str, str]]:
    """Reports each unit's state and `systemctl show` properties; returns the properties, which
    the later checks read instead of asking systemctl again (a process each, under TCG)."""
    emit("units", states(sorted(set(units) | set(KNOWN_UNITS) | {AGENT_UNIT})))
    shown = {}
    for unit in units:
        shown[unit] = properties = show(unit)
        emit(
            "show", {"unit": unit, "properties": properties, "process": process_status(properties.get("MainPID", "0"))}
        )
    return shown


def release_tree(release: str) -> dict[str, object]:
    """Ownership and modes of an installed release: what the app user can enter, read and run."""
    root = APP_ROOT / "releases" / release
    not_root, bad_dirs, unreadable, entries = [], [], [], 0
    for directory, _, files in os.walk(root):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            info = path.lstat()
            entries += 1
            if info.st_uid != 0 or info.st_gid != 0:
                not_root.append(str(path))
            if path.is_symlink():
                continue
            if path.is_dir() and info.st_mode & 0o7777 != 0o755:
                bad_dirs.append(f"{path} {info.st_mode & 0o7777:o}")
            elif path.is_file() and not info.st_mode & 0o004:
                unreadable.append(f"{path} {info.st_mode & 0o7777:o}")
    return {
        "entries": entries,
        "not_root_owned": not_root[:20],
        "dirs_not_0755": bad_dirs[:20],
        "files_not_world_readable": unreadable[:20],
    }


def check_release(app_module: str) -> None:
    """Which release is active, how it got there, and whether the app user can use it."""
    active = Path(os.readlink(APP_ROOT / "current")).name if (APP_ROOT / "current").is_symlink() else None
    releases_dir = APP_ROOT / "releases"
    as_app = run(
        "setpriv",
        f"--reuid={layout.USER}",
        f"--regid={layout.GROUP}",
        "--clear-groups",
        "--",
        "/bin/sh",
        "-c",
        f"cd {APP_SRC} && exec {APP_PYTHON} -c 'import django, celery, {app_module}; print(\"ok\")'",
    )
    emit(
        "release",
        {
            "active": active,
            "installed": sorted(p.name for p in releases_dir.iterdir() if (p / ".installed").is_file())
            if releases_dir.is_dir()
            else [],
            "modes": {str(p): f"{p.stat().st_mode & 0o7777:o}" for p in (APP_ROOT, releases_dir) if p.exists()},
            "tree": release_tree(active) if active else {},
            "app_user_imports": (as_app.stdout + as_app.stderr).strip()[-500:],
            "journal": journal(layout.RELEASE_UNIT),
        },
    )


def check_agent() -> None:
    """The SSM agent install the user-data runs: package, unit, state."""
    package = run("dpkg-query", "-W", "-f", "${Status} ${Version}", "amazon-ssm-agent")
    emit(
        "ssm-agent",
        {
            "package": package.stdout.strip() if package.returncode == 0 else None,
            "active": run("systemctl", "is-active", AGENT_UNIT).stdout.strip(),
            "enabled": run("systemctl", "is-enabled", AGENT_UNIT).stdout.strip(),
            "unit_file": show(AGENT_UNIT).get("FragmentPath"),
        },
    )


def installer_lines() -> list[str]:
    """What install-aws-agent printed during cloud-init's runcmd (signature verdicts included)."""
    text = CLOUD_INIT_OUTPUT.read_text(errors="replace") if CLOUD_INIT_OUTPUT.exists() else ""
    return [line for line in text.splitlines() if line.startswith("install-aws-agent: ")]


def first_runs_ended(units: list[str], timeout: float = 300) -> list[str]:
    """A timer's service writes its line when its run ends, and app-queue-metrics first runs at
    the first minute boundary after its timer starts, once Beat has started: its journal, read
    before that run ends, is empty or not by where the minute fell. Returns the timed units whose
    first run had not ended by `timeout` (120 s was too short on a machine four times slower under
    TCG, two boots at a time: session 22)."""
    timed = [unit for unit in units if show(unit).get("TriggeredBy")]

    def unended() -> list[str]:
        return [unit for unit in timed if show(unit).get("ExecMainExitTimestampMonotonic", "0") == "0"]

    wait_until(lambda: not unended(), timeout)
    return unended()


def journald_units(config: dict) -> list[str]:
    collected = config["logs"]["logs_collected"]
    return [unit for entry in collected.get("journald", {}).get("collect_list", []) for unit in entry["units"]]


def source_lines(config: dict) -> dict[str, int]:
    """How many lines each source the agent config names holds here: a unit's journal (what its
    own processes wrote, not systemd's lines about it), a file (-1: no such file)."""
    lines = {
        unit: len(run("journalctl", f"_SYSTEMD_UNIT={unit}", "-o", "cat", "--no-pager").stdout.splitlines())
        for unit in journald_units(config)
    }
    for entry in config["logs"]["logs_collected"].get("files", {}).get("collect_list", []):
        path = Path(entry["file_path"])
        lines[str(path)] = len(path.read_text(errors="replace").splitlines()) if path.exists() else -1
    return lines


def check_log_agent() -> None:
    """The CloudWatch agent install the user-data runs: package, unit, the config it was started
    with (byte for byte the one the user-data wrote), and the installer's signature verdicts."""
    package = run("dpkg-query", "-W", "-f", "${Status} ${Version}", layout.CLOUDWATCH_AGENT_PACKAGE)
    written = Path(layout.CLOUDWATCH_AGENT_CONFIG)
    config = json.loads(written.read_text()) if written.exists() else None
    # Before the lines are counted: a timer's service has none until its first run ends.
    unended = first_runs_ended(journald_units(config)) if config else []
    emit(
        "log-agent",
        {
            "package": package.stdout.strip() if package.returncode == 0 else None,
            "active": run("systemctl", "is-active", LOG_AGENT_UNIT).stdout.strip(),
            "enabled": run("systemctl", "is-enabled", LOG_AGENT_UNIT).stdout.strip(),
            "config_fetched": LOG_AGENT_CONFIG.exists()
            and written.exists()
            and LOG_AGENT_CONFIG.read_bytes() == written.read_bytes(),
            "config": config,
            "first_runs_unended": unended,
            "lines": source_lines(config) if config else {},
            "installer": installer_lines(),
        },
    )


def check_aws_requests() -> None:
    lines = AWS_REQUESTS.read_text().splitlines() if AWS_REQUESTS.exists() else []
    emit("aws-requests", [json.loads(line) for line in lines])


def run_as_ssm(script: str) -> dict[str, object]:
    """A script as SSM's AWS-RunShellScript runs it: /bin/sh, root; AWS's endpoints are the
    guest's stand-ins (on EC2 the agent's environment reaches AWS through the instance role)."""
    aws = env_file(AWS_ENV)
    result = run("/usr/bin/env", *(f"{k}={v}" for k, v in aws.items()), "/bin/sh", "-c", script, timeout=600)
    return {"rc": result.returncode, "output": (result.stdout + result.stderr).strip().splitlines()[-15:]}


def check_deploy(deploy: dict[str, str], units: list[str]) -> None:
    """The ops tool's deploy of another release on this running instance: install, then switch."""
    installed = run_as_ssm(deploy["install"])
    switched = run_as_ssm(deploy["switch"]) if installed["rc"] == 0 else None
    ready = wait_until(lambda: all(s == "active" for s in states(units).values()), timeout=300)
    report: dict[str, object] = {"install": installed, "switch": switched, "all_active_after": bool(ready)}
    report["active_after"] = Path(os.readlink(APP_ROOT / "current")).name
    report["tree_after"] = release_tree(str(report["active_after"]))
    if layout.GUNICORN_UNIT in units:
        host = allowed_host()
        report["healthz_after"] = wait_until(lambda: (h := http("GET", "/healthz", host))["status"] == 200 and h, 120)
    emit("deploy", report)


def check_redis() -> None:
    emit("redis", {"auth_ping": redis_cli("PING"), "anonymous_ping": redis_cli("PING", password=False)})


def allowed_host() -> str:
    return env_file(layout.APP_ENV)["DJANGO_ALLOWED_HOSTS"].split(",")[0]


def fetch(path: str, host: str) -> dict[str, object]:
    """GET through gunicorn: the status, the body as text, the Content-Type."""
    request = Request(f"http://127.0.0.1:8000{path}", headers={"Host": host})
    try:
        with urlopen(request, timeout=60) as response:
            body = response.read().decode(errors="replace")
            return {"status": response.status, "body": body, "type": response.headers.get("Content-Type")}
    except Exception as error:  # the test reports whatever went wrong
        return {"status": getattr(error, "code", None), "error": repr(error)}


def check_release_command() -> None:
    """How the program's release command unit ended at boot, and what it printed."""
    properties = show(layout.RELEASE_COMMAND_UNIT)
    emit(
        "release-command",
        {
            "state": properties.get("ActiveState"),
            "result": properties.get("Result"),
            "journal": run(
                "journalctl", "-u", layout.RELEASE_COMMAND_UNIT, "-o", "cat", "--no-pager"
            ).stdout.splitlines(),
        },
    )


def check_bookshelf() -> None:
    """examples/bookshelf's index (its books come from PostgreSQL) and the hashed stylesheet the
    page links, both through gunicorn."""
    host = allowed_host()
    page = fetch("/", host)
    linked = re.findall(r'href="(/static/[^"]+\.css)"', str(page.get("body", "")))
    static = fetch(linked[0], host) if linked else None
    emit(
        "bookshelf",
        {
            "page": {**page, "body": str(page.get("body", ""))[-4000:]},
            "stylesheet": linked,
            "static": static
            and {k: v for k, v in static.items() if k != "body"} | {"bytes": len(static.get("body", ""))},
        },
    )


def repeated_lines(unit: str) -> list[dict[str, str]]:
    """Entries another process wrote under the unit's name (OBJECT_SYSTEMD_UNIT, from root: what
    `journalctl -u` and the log agent's unit selection match besides the unit's own lines)."""
    listed = run("journalctl", f"OBJECT_SYSTEMD_UNIT={unit}", "_UID=0", "-o", "json", "--no-pager").stdout
    entries = [json.loads(line) for line in listed.splitlines() if line.strip()]
    return [
        {
            "message": e.get("MESSAGE", ""),
            "monotonic_us": e["__MONOTONIC_TIMESTAMP"],
            "writer": e.get("_SYSTEMD_UNIT", ""),
        }
        for e in entries
    ]


def check_boot_failed() -> None:
    """A boot whose required unit failed: the program's app-boot-failed@<unit> (its OnFailure=)
    says why, waits its delay, then reports the instance; wait until it has ended."""

    def handlers() -> list[str]:
        """The app-boot-failed@ instances that were started (systemd also loads, unstarted, the
        OnFailure= target of every unit that has one)."""
        listed = run("systemctl", "list-units", "--all", "--plain", "--no-legend", "app-boot-failed@*").stdout
        units = [line.split()[0] for line in listed.splitlines() if line.strip()]
        return [unit for unit in units if show(unit).get("ExecMainStartTimestampMonotonic", "0") != "0"]

    def ended() -> bool:
        found = handlers()
        return bool(found) and all(
            show(unit).get("ActiveState") in ("inactive", "failed")
            and show(unit).get("ExecMainExitTimestampMonotonic", "0") != "0"
            for unit in found
        )

    finished = wait_until(ended, timeout=300, interval=2)
    emit(
        "boot-failed",
        {
            "ended": bool(finished),
            "uptime": uptime(),
            "handlers": {
                unit: {
                    "state": show(unit).get("ActiveState"),
                    "result": show(unit).get("Result"),
                    "journal": journal(unit),
                }
                for unit in handlers()
            },
            "failed": run("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout.splitlines(),
            "release": {
                "state": show(layout.RELEASE_UNIT).get("ActiveState"),
                "failed_monotonic_us": int(show(layout.RELEASE_UNIT).get("InactiveEnterTimestampMonotonic") or 0),
                "journal": journal(layout.RELEASE_UNIT),
                "repeated": repeated_lines(layout.RELEASE_UNIT),
            },
            "log_agent_active_us": int(show(LOG_AGENT_UNIT).get("ActiveEnterTimestampMonotonic") or 0),
        },
    )


def check_web() -> None:
    host = allowed_host()
    health = http("GET", "/healthz", host)
    enqueued = http("POST", "/tasks/healthcheck", host)
    queued = redis_cli("LRANGE", "default", "0", "-1", db=0)
    # The app's own settings as the running gunicorn sees them (app.environment, app.secretParameters).
    app_settings = http("GET", "/app-settings", host)
    emit("web", {"healthz": health, "enqueue": enqueued, "queued_messages": queued, "app_settings": app_settings})


def ask_imds_from_cgroup(cgroup: str, answer: int) -> None:
    """In a fork of the probe: move into the cgroup, make the IMDSv2 requests (a session token,
    then the instance id), write what came of them to `answer` and exit. systemd's
    IPAddressDeny= is a filter on the unit's cgroup: every socket a process in it opens is subject
    to it, whichever process that is."""
    result: dict[str, object] = {}
    try:
        Path(f"/sys/fs/cgroup{cgroup}/cgroup.procs").write_text(str(os.getpid()))
        put = Request(f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        token = urlopen(put, timeout=5).read().decode()
        get = Request(f"{IMDS}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
        result = {"instance_id": urlopen(get, timeout=5).read().decode()}
    except Exception as error:  # reported to the parent, whatever it is
        result = {"error": repr(error)}
    finally:
        os.write(answer, json.dumps(result).encode())
        os._exit(0)


def imds_from_cgroups(cgroups: dict[str, str]) -> dict[str, dict[str, object]]:
    """An IMDS request from each named cgroup (a running unit's, by unit), all at once: a fork of
    the probe per cgroup (a new interpreter per unit took seconds under TCG), so the denied
    units' requests time out together instead of 5 s one after another."""
    results: dict[str, dict[str, object]] = {}
    asking: dict[str, tuple[int, int]] = {}
    for unit, cgroup in cgroups.items():
        if not cgroup:
            results[unit] = {"error": f"{unit} has no cgroup (not running)"}
            continue
        answer, child_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(answer)
            ask_imds_from_cgroup(cgroup, child_end)
        os.close(child_end)
        asking[unit] = (child, answer)
    for unit, (child, answer) in asking.items():
        with os.fdopen(answer) as pipe:
            text = pipe.read()
        os.waitpid(child, 0)
        results[unit] = dict(json.loads(text)) if text else {"error": f"no answer from the process in {unit}'s cgroup"}
    return results


def own_cgroup() -> str:
    """The probe's cgroup (v2: the one line `0::<path>`)."""
    return Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]


def check_imds(shown: dict[str, dict[str, str]]) -> None:
    """Who reaches the instance metadata service: each running unit of the role (the app units
    are denied by IPAddressDeny=, the agent keeps it) and, as the control, the probe itself.
    `shown`: check_units' properties, taken once every unit was active."""
    running = {
        unit: properties
        for unit, properties in shown.items()
        if unit.endswith(".service") and properties.get("Type") != "oneshot"
    }
    answers = imds_from_cgroups(
        {**{unit: properties.get("ControlGroup", "") for unit, properties in running.items()}, PROBE_UNIT: own_cgroup()}
    )
    emit(
        "imds",
        {
            "from_unit": {unit: answers[unit] for unit in running},
            "ip_address_deny": {unit: properties.get("IPAddressDeny", "") for unit, properties in running.items()},
            "from_probe": answers[PROBE_UNIT],
        },
    )


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


def check_termination(instance_id: str) -> None:
    """Auto Scaling holds this worker in Terminating:Wait with a task running: IMDS reports the
    target lifecycle state `Terminated`; the program's app-warm-stop agent stops the Celery units
    warm, then completes the lifecycle action (the stand-in records the call)."""
    workers = [unit for unit in enabled_units() if layout.queue_of_worker_unit(unit)]
    run("systemctl", "start", *workers)  # the warm-stop check left the default queue's stopped
    key = f"terminate-{uuid.uuid4().hex[:8]}"
    enqueued = app_side("enqueue", key, str(TASK_SECONDS))
    started = wait_until(lambda: ledger_count("started", key), timeout=120) if "task_id" in enqueued else 0
    agent_before = show(layout.WARM_STOP_UNIT)["ActiveState"]
    if not started:
        emit("termination", {"task": enqueued, "started": started, "agent_before": agent_before})
        return
    LIFECYCLE_STATE.write_text("Terminated\n")
    agent = wait_until(lambda: show(layout.WARM_STOP_UNIT)["ActiveState"] != "active", timeout=240, interval=1)
    stopped = {unit: show(unit) for unit in workers}
    task_id = str(enqueued["task_id"])
    pending = redis_cli("HGETALL", "unacked", db=0) + redis_cli("LRANGE", "default", "0", "-1", db=0)
    emit(
        "termination",
        {
            "task": enqueued,
            "started": started,
            "agent_before": agent_before,
            "agent_ended": bool(agent),
            "agent": {k: show(layout.WARM_STOP_UNIT).get(k) for k in ("ActiveState", "Result", "ExecMainStatus")},
            "agent_journal": journal(layout.WARM_STOP_UNIT),
            "instance_id": instance_id,
            "workers": {
                unit: {
                    "state": props["ActiveState"],
                    "result": props["Result"],
                    "stopped_monotonic_us": int(props.get("InactiveEnterTimestampMonotonic") or 0),
                }
                for unit, props in stopped.items()
            },
            "starts": ledger_count("started", key),
            "executions": ledger_count("executed", key),
            "message_pending": task_id in pending,
        },
    )


def probe() -> None:
    data = boot_data()
    scenario = data.get("scenario", "")
    emit("start", {"uptime": uptime(), "scenario": scenario})
    units = wait_until(enabled_units, timeout=600)
    # Two boots share the host's two cores (tests/vm/conftest.py): the venv build at boot may take
    # several minutes; the harness's own limit (boot.BOOT_TIMEOUT_SECONDS) is the backstop.
    ready = wait_until(lambda: settled(units), timeout=1200) == "active"
    emit("ready", {"uptime": uptime(), "all_active": ready, "units": units})
    if not ready:
        emit("not-active", {unit: journal(unit) for unit, state in states(units).items() if state != "active"})
    check_cloud_init()
    shown = check_units(units)
    if data.get("timing"):
        # The benchmark's boots: where the time went (~12 s under TCG that no test reads), and
        # none of the program's checks, which the lane's own boots make (~20 s of a web boot).
        boot_timing()
        return
    if scenario == "boot-failed":
        check_boot_failed()
    elif layout.RELEASE_UNIT in units:  # not on a boot without the program (the benchmark's baseline)
        check_program(shown, scenario, data)
    check_aws_requests()


def boot_timing() -> None:
    emit(
        "boot-timing",
        {
            "blame": run("systemd-analyze", "blame").stdout.splitlines()[:12],
            "cloud_init": run("cloud-init", "analyze", "blame").stdout.splitlines()[:30],
            "chain": run("systemd-analyze", "critical-chain").stdout.splitlines()[:25],
            # When the release install started, downloaded, installed, and the agents ran (uptime);
            # whether the release command ran or found the release's record.
            "release": run(
                "journalctl",
                "-u",
                layout.RELEASE_UNIT,
                "-u",
                LOG_AGENT_UNIT,
                "-u",
                layout.RELEASE_COMMAND_UNIT,
                "-o",
                "short-monotonic",
                "--no-pager",
            ).stdout.splitlines()[:40],
        },
    )


def check_program(shown: dict[str, dict[str, str]], scenario: str, data: dict) -> None:
    """The program's checks; `shown`: check_units' properties of every unit the user-data enables."""
    units = list(shown)
    check_release(data.get("app_module", "proj"))
    check_agent()
    check_log_agent()
    check_redis()
    check_imds(shown)
    if scenario == "bookshelf":
        check_release_command()
        if layout.GUNICORN_UNIT in units:
            check_bookshelf()
        return
    if layout.GUNICORN_UNIT in units:
        check_web()
    if WORKER_UNIT in units:
        check_roundtrip()
    if layout.BEAT_UNIT in units:
        check_beat()
    if scenario == "restart":
        check_restart()
        check_warm_stop()
        check_termination(data["instance_id"])
    if scenario == "deploy":
        check_deploy(data["deploy"], units)


def main() -> None:
    emit("started", {"uptime": uptime()})  # the host's sign that the guest got past basic.target
    try:
        probe()
    except Exception:
        emit("probe-error", traceback.format_exc())
    finally:
        emit("done", {"uptime": uptime()})
        run("systemctl", "poweroff", "--no-block")


if __name__ == "__main__":
    main()
