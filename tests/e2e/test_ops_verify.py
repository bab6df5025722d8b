"""The ops tool's verify checks (ops/scripts.py), the very text SSM would run, run through the
local executor on every machine of the running end-to-end stack: real TLS Redis with AUTH, real
celery workers, a real healthcheck round-trip. Also that they fail when the stack is broken.

One stand-in: the harness runs units without systemd, so `systemctl` is a small shim:
`is-active` and `show -p MainPID` answer from the harness's own process table (a unit is active
while its process lives; the oneshots ran to completion at boot), other calls are recorded, and
carried out by the harness afterwards only where a test says so (the token rotation). Every
other command in the scripts is the real one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import threading
from pathlib import Path

import boto3
import pytest
import redis
from e2e_harness.deployment import Deployment, wait_until, with_extra_member
from e2e_harness.machine import SimulatedMachine, run_as_root
from e2e_harness.parameter_store import CREDENTIALS
from e2e_harness.redis_server import PORT
from e2e_harness.units import SYSTEM_PATH, parse_env_file

from ops.cli import main
from ops.executor import LocalExecutor
from ops.inventory import Instance
from ops.rollout import tasks_in_flight
from ops.rotation import NEXT_STEPS
from ops.scripts import (
    current_release_script,
    install_release_script,
    stop_timeouts_script,
    switch_release_script,
    tasks_in_flight_script,
    token_check_script,
    verify_script,
)
from ops.verify import CheckRow, VerifyOptions, parse_check_lines, verify_all
from userdata import layout
from userdata.render import written_files

SYSTEMCTL_SHIM = """#!/bin/sh
# systemctl for the e2e harness: is-active answers from active-<hostname> (the units the harness
# runs), `show -p MainPID --value UNIT` from pids-<hostname>; any other call is only recorded in
# calls-<hostname>, for the test to read.
here=$(dirname "$0")
if [ "$1" = show ]; then
  for unit; do :; done
  sed -n "s/^$unit //p" "$here/pids-$(uname -n)"
  exit 0
fi
active="$here/active-$(uname -n)"
if [ "$1" = stop ]; then grep -vx "$2" "$active" > "$active.tmp"; mv "$active.tmp" "$active"; fi
if [ "$1" = start ]; then echo "$2" >> "$active"; fi
if [ "$1" != is-active ]; then echo "$*" >> "$here/calls-$(uname -n)"; exit 0; fi
if grep -qx "$2" "$active"; then echo active; else echo inactive; exit 3; fi
"""


@pytest.fixture(scope="module")
def shim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("systemctl-shim")
    directory.chmod(0o755)
    (directory / "systemctl").write_text(SYSTEMCTL_SHIM)
    (directory / "systemctl").chmod(0o755)
    return directory


def instances_of(stack: Deployment) -> list[Instance]:
    return [
        Instance(i.tags["Name"], i.tags["Name"], i.tags["Role"], i.tags.get("celery-beat") == "true")
        for i in stack.render.instances
    ]


def first_of_role(stack: Deployment, role: str) -> Instance:
    return next(i for i in instances_of(stack) if i.role == role)


def record_active_units(machine: SimulatedMachine, shim_dir: Path) -> None:
    active = [u for u in machine.units if machine.service(u).type == "oneshot"]
    active += [u for u, process in machine.processes.items() if process.poll() is None]
    (shim_dir / f"active-{machine.hostname}").write_text("".join(f"{u}\n" for u in active))
    running = [u for u, process in machine.processes.items() if process.poll() is None]
    (shim_dir / f"pids-{machine.hostname}").write_text("".join(f"{u} {machine.main_pid(u)}\n" for u in running))


def executor_for(stack: Deployment, shim_dir: Path, instance_role: bool = False) -> LocalExecutor:
    """instance_role: the credentials and Parameter Store endpoint an instance's role gives a
    root command (the scripts that read Parameter Store themselves need them)."""
    role = [f"{k}={v}" for k, v in stack.site.instance_environment.items()] if instance_role else []

    def enter_machine(instance: Instance, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        machine = stack.machines[instance.name]
        record_active_units(machine, shim_dir)
        return run_as_root(machine, ["/usr/bin/env", f"PATH={shim_dir}:{SYSTEM_PATH}", *role, *argv], timeout)

    return LocalExecutor(enter_machine)


def verify(stack: Deployment, shim_dir: Path, **options: object) -> list[CheckRow]:
    settings = VerifyOptions(**{"check_timeout": 10, "command_timeout": 120, **options})
    return verify_all(
        executor_for(stack, shim_dir), instances_of(stack), settings, beat_running=True, report=lambda row: None
    )


def failures(rows: list[CheckRow]) -> dict[tuple[str, str], str]:
    return {(row.instance.name, row.check): row.detail for row in rows if not row.ok}


def test_every_verify_check_passes_on_the_running_stack(running: Deployment, shim_dir: Path) -> None:
    rows = verify(running, shim_dir)
    assert failures(rows) == {}
    assert len(rows) == 4 * len(running.machines)
    details = {(row.instance.name, row.check): row.detail for row in rows}
    beat = running.beat_machine.hostname
    assert details[(beat, "redis_ping")] == f"PONG from {running.redis.host}:6379 over TLS with AUTH"
    assert details[(beat, "celery_ping")] == f"pong from default@{beat} long@{beat}"
    assert "celery-beat.service" in details[(beat, "services")]
    assert re.fullmatch(
        r"celery\.accumulate accepted by a worker after \d+\.\d s", details[(running.web.hostname, "healthcheck")]
    )


def test_a_stopped_worker_unit_fails_services_and_celery_ping_on_its_machine(live: Deployment, shim_dir: Path) -> None:
    worker = next(m for m in live.by_role("worker") if m is not live.beat_machine)
    live_rows_before = failures(verify(live, shim_dir))
    assert live_rows_before == {}
    worker.stop("celery-worker-long.service")
    found = failures(verify(live, shim_dir))
    assert set(found) == {(worker.hostname, "services"), (worker.hostname, "celery_ping")}
    assert found[(worker.hostname, "services")] == "not active: celery-worker-long.service=inactive"
    assert found[(worker.hostname, "celery_ping")].startswith(f"no pong from: long@{worker.hostname}")


def test_an_unknown_healthcheck_task_fails_the_round_trip(running: Deployment, shim_dir: Path) -> None:
    found = failures(verify(running, shim_dir, healthcheck_task="myapp.tasks.no_such_task", check_timeout=3))
    assert set(found) == {(m.hostname, "healthcheck") for m in running.by_role("web")}
    # The worker refuses the unknown name: it never counts as accepted.
    assert set(found.values()) == {"no worker accepted myapp.tasks.no_such_task within 3 s"}


def test_the_healthcheck_needs_no_result_backend(running: Deployment, shim_dir: Path) -> None:
    # The default stack has app.resultBackend false: the web instance's env without the backend
    # URL is what such a stack runs with (the workers need none to accept a task).
    web = first_of_role(running, "web")
    without_backend = verify_script("web", expect_beat=False, healthcheck_task="celery.accumulate", check_timeout=10)
    without_backend = without_backend.replace("\n  set +a\n", "\n  unset CELERY_RESULT_BACKEND\n  set +a\n", 1)
    assert "unset CELERY_RESULT_BACKEND" in without_backend
    result = executor_for(running, shim_dir).run(web, "verify web", without_backend, 120)
    rows = {row.check: row for row in parse_check_lines(web, result)}
    assert rows["healthcheck"].ok, rows["healthcheck"].detail
    assert rows["healthcheck"].detail.startswith("celery.accumulate accepted by a worker after ")


def test_the_in_flight_query_reads_the_workers_real_replies(running: Deployment, shim_dir: Path) -> None:
    worker = first_of_role(running, "worker")
    result = executor_for(running, shim_dir).run(worker, "tasks in flight", tasks_in_flight_script(10), 60)
    assert result.ok, result.stderr
    found = tasks_in_flight(result.stdout)
    assert set(found) == {"active", "reserved"}
    # Nothing but Beat's heartbeat (a few milliseconds every 5 s) can be in flight on an idle stack.
    assert all(task.startswith("myapp.tasks.beat_heartbeat[") for task in found["active"] + found["reserved"]), found


def artifact_digest(running: Deployment, machine_name: str) -> str:
    """The SHA-256 of the release the stack booted, as the builder wrote it beside the artifact."""
    env = parse_env_file(running.machines[machine_name].host_path(layout.RELEASE_ENV).read_text())
    key = f"{env['ARTIFACT_PREFIX']}{running.release}.tar.gz.sha256"
    checksum = running.store.client("s3").get_object(Bucket=env["ARTIFACT_BUCKET"], Key=key)["Body"].read()
    return checksum.decode().split()[0]


def test_the_release_scripts_drive_the_machines_app_release(running: Deployment, shim_dir: Path) -> None:
    # What deploy runs first on each instance, against the program's own app-release: the
    # release the machines booted with is read back, and installing it again is a no-op.
    executor, worker = executor_for(running, shim_dir), first_of_role(running, "worker")
    current = executor.run(worker, "read current release", current_release_script(), 60)
    assert (current.ok, current.stdout.strip()) == (True, running.release), current.stderr
    genuine = artifact_digest(running, worker.name)
    install = executor.run(worker, f"install {running.release}", install_release_script(running.release, genuine), 120)
    assert install.ok, install.stderr
    assert install.stdout.strip() == f"app-release: {running.release} already installed"


def test_the_install_script_refuses_an_artifact_swapped_in_s3_and_installs_nothing(
    running: Deployment, shim_dir: Path
) -> None:
    # What deploy runs first on each instance, with the instance role as on AWS: app-release
    # downloads the artifact and refuses it unless it has the digest deploy pins, whatever the
    # checksum beside it says (here the replaced artifact's own).
    worker = first_of_role(running, "worker")
    machine = running.machines[worker.name]
    env = parse_env_file(machine.host_path(layout.RELEASE_ENV).read_text())
    s3, bucket, prefix = running.store.client("s3"), env["ARTIFACT_BUCKET"], env["ARTIFACT_PREFIX"]
    key = f"{prefix}{running.release}.tar.gz"
    tampered = with_extra_member(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), "src/x.py", b"1")
    s3.put_object(Bucket=bucket, Key=f"{prefix}swapped-1.tar.gz", Body=tampered)
    beside = f"{hashlib.sha256(tampered).hexdigest()}  swapped-1.tar.gz\n"
    s3.put_object(Bucket=bucket, Key=f"{prefix}swapped-1.tar.gz.sha256", Body=beside.encode())
    pinned = artifact_digest(running, worker.name)
    executor = executor_for(running, shim_dir, instance_role=True)
    install = executor.run(worker, "install swapped-1", install_release_script("swapped-1", pinned), 120)
    assert not install.ok
    assert (
        f"app-release: release swapped-1: artifact sha256 {hashlib.sha256(tampered).hexdigest()}, "
        f"expected {pinned}; not installed"
    ) in install.stderr
    assert not machine.host_path(f"{layout.RELEASES_DIR}/swapped-1").exists()


def test_the_switch_script_activates_with_app_release_and_restarts_each_queues_worker(
    running: Deployment, shim_dir: Path
) -> None:
    # Activating the release already active swaps the symlink for an identical one: a real run
    # of app-release activate that changes nothing for the other tests.
    executor, worker = executor_for(running, shim_dir), first_of_role(running, "worker")
    calls = shim_dir / f"calls-{worker.name}"
    calls.unlink(missing_ok=True)
    result = executor.run(worker, f"activate {running.release}", switch_release_script("worker", running.release), 60)
    assert result.ok, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{running.release} is active; units restarted"
    assert calls.read_text() == "restart celery-worker-default.service celery-worker-long.service\n"


def test_the_stop_timeouts_script_reads_each_roles_rendered_units(running: Deployment, shim_dir: Path) -> None:
    # What sizes deploy's restart timeout: the TimeoutStopSec the program rendered into the units
    # this instance restarts, read on the machine.
    executor = executor_for(running, shim_dir)
    for role, units in (("worker", r"celery-worker-.*\.service"), ("web", r"gunicorn\.service")):
        instance = first_of_role(running, role)
        rendered = next(i for i in running.render.instances if i.tags["Name"] == instance.name)
        expected = "".join(
            f"{Path(f.path).name} {stop}\n"
            for f in written_files(rendered.user_data)
            if re.fullmatch(units, Path(f.path).name)
            for stop in re.findall(r"^TimeoutStopSec=(\d+)$", f.content, re.M)
        )
        result = executor.run(instance, "read stop timeouts", stop_timeouts_script(role), 60)
        assert result.ok, result.stderr
        assert expected and sorted(result.stdout.splitlines()) == sorted(expected.splitlines())


def test_the_token_check_passes_on_the_booted_token_and_fails_once_parameter_store_has_a_new_one(
    running: Deployment, shim_dir: Path
) -> None:
    # rotate-token's proof that an instance moved: every running unit's own environment holds the
    # token now in Parameter Store. A redis PING could not tell: during a rotation both work.
    executor = executor_for(running, shim_dir, instance_role=True)
    beat = next(i for i in instances_of(running) if i.beat)
    check = token_check_script("worker", expect_beat=True)
    booted = executor.run(beat, "check token", check, 60)
    assert booted.ok, booted.stdout + booted.stderr
    units = "celery-worker-default.service celery-worker-long.service celery-beat.service"
    assert booted.stdout.strip() == f"3 units use the token in Parameter Store: {units}"
    source = parse_env_file(running.machines[beat.name].host_path("/etc/app/secrets-source.env").read_text())
    parameter = source["AUTH_TOKEN_PARAMETER"]
    running.store.put_secret(parameter, "N3wTokenNotYetFetched" * 3)
    try:
        stale = executor.run(beat, "check token", check, 60)
    finally:
        running.store.put_secret(parameter, running.redis.password)
    assert not stale.ok
    assert stale.stderr.strip().splitlines()[-1] == f"not on the token in Parameter Store: {units.replace(' ', ', ')}"
    assert "N3wToken" not in stale.stdout + stale.stderr and running.redis.password not in stale.stdout + stale.stderr


def launch_in_moto(running: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machines as EC2 instances with the program's tags in the harness's moto server, once
    per session, so `python -m ops` finds them by tag as it would in AWS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", running.store.endpoint)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    ec2 = boto3.client("ec2", region_name=running.store.region)
    if ec2.describe_instances(Filters=[{"Name": "tag:Stack", "Values": ["prod"]}])["Reservations"]:
        return
    for instance in running.render.instances:
        tags = [{"Key": key, "Value": value} for key, value in instance.tags.items()]
        ec2.run_instances(
            ImageId="ami-0123456789abcdef0",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )


def test_python_m_ops_verify_finds_the_machines_by_tag_and_passes(
    running: Deployment, shim_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The whole command: instances found by tag, then checked on the machine of the same Name.
    launch_in_moto(running, monkeypatch)
    code = main(
        ["verify", "--stack", "prod", "--region", running.store.region, "--check-timeout", "10"],
        executor=executor_for(running, shim_dir),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    checks = 4 * len(running.machines)
    assert out.splitlines()[-1] == f"{checks} of {checks} checks passed on {len(running.machines)} instances"


def enacting_executor(stack: Deployment, shim_dir: Path) -> LocalExecutor:
    """Runs each script as executor_for does, then carries out the systemctl calls it made
    (recorded by the shim) on the machine, in order, as systemd would have: a oneshot runs again,
    a long-running unit stops warm and starts with the environment files as they are now."""
    inner = executor_for(stack, shim_dir, instance_role=True)

    def run_and_enact(instance: Instance, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        machine = stack.machines[instance.name]
        calls = shim_dir / f"calls-{machine.hostname}"
        calls.unlink(missing_ok=True)
        done = inner.runner(instance, argv, timeout)
        for verb, *units in (line.split() for line in (calls.read_text() if calls.exists() else "").splitlines()):
            for unit in units:
                if machine.service(unit).type == "oneshot":
                    machine.run_oneshot(unit)
                    continue
                if verb in ("stop", "restart") and unit in machine.processes:
                    machine.stop(unit)
                if verb in ("start", "restart"):
                    machine.start(unit)
        return done

    return LocalExecutor(run_and_enact)


def test_rotate_token_moves_the_running_stack_to_a_new_token_with_no_task_lost(
    live: Deployment, shim_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The ROTATE window as ElastiCache opens it, with Redis ACLs: the default user accepts the
    # old and the new token; Parameter Store already holds the new one (what `pulumi up` leaves).
    old, new = live.redis.password, "R0tated" + secrets.token_hex(24)
    parameter = parse_env_file(live.web.host_path("/etc/app/secrets-source.env").read_text())["AUTH_TOKEN_PARAMETER"]
    live.redis.client().execute_command("ACL", "SETUSER", "default", "on", f">{new}")
    live.store.put_secret(parameter, new)
    launch_in_moto(live, monkeypatch)

    during = [f"rotation-during-{n}" for n in range(150)]
    producer = threading.Thread(target=enqueue_keys, args=(live, during, 0.05))
    producer.start()
    code = main(
        ["rotate-token", "--stack", "prod", "--region", live.store.region, "--check-timeout", "30"],
        executor=enacting_executor(live, shim_dir),
    )
    out = capsys.readouterr()
    producer.join(timeout=300)
    logs = {f"{m.hostname} {u}": m.log(u)[-1500:] for m in live.by_role("worker") for u in m.processes}
    assert code == 0, out.out + out.err + "\n".join(f"--- {k}\n{v}" for k, v in logs.items())
    assert out.out.splitlines()[-3] == f"  {NEXT_STEPS[0]}"

    # SET, as `pulumi up` with the strategy SET leaves it: only the new token works from now on.
    live.redis.client().execute_command("ACL", "SETUSER", "default", "resetpass", f">{new}")
    live.redis.password = new
    refused = redis.Redis(
        host=live.redis.host, port=PORT, password=old, ssl=True, ssl_ca_certs=str(live.redis.cert.ca_file)
    )
    with pytest.raises(redis.AuthenticationError):
        refused.ping()
    after = [f"rotation-after-{n}" for n in range(30)]
    enqueue_keys(live, after, 0.0)

    executed = lambda: {k.decode() for k in live.ledger().hkeys("ledger:executed")}  # noqa: E731
    wait_until(lambda: set(during + after) <= executed(), timeout=180, interval=1.0)
    for machine in live.machines.values():
        for unit in machine.processes:
            assert "AuthenticationError" not in machine.log(unit), (machine.hostname, unit)


def enqueue_keys(running: Deployment, keys: list[str], seconds: float) -> None:
    code = f"from myapp.tasks import record_execution\nfor key in {keys!r}: record_execution.delay(key, {seconds})"
    result = running.django(code, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
