"""app.releaseCommand exactly once per release, for real: the rendered app-release-command.service
run from its own command line (the release's venv python and the machine script, as the app
user, with the unit's env files) on two simulated instances at once, and the script `python -m
ops deploy` sends, both against a real redis-server with TLS and AUTH holding the lock and the
done record. Also `python -m ops exec`'s script on an instance.

The command counts its runs in a file every instance sees (the harness shares APP_ROOT between
machines, as the release tree is the same everywhere) and fails while a flag file exists.
(Not a Django migration: the sample project has no database.)"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_harness.deployment import Deployment
from e2e_harness.machine import APP_UID, SimulatedMachine, run_as_root
from e2e_harness.units import SYSTEM_PATH

from ops.executor import CommandResult, LocalExecutor
from ops.inventory import Instance
from ops.one_off import run_one_off
from ops.scripts import release_command_script
from userdata import layout

RUNS = f"{layout.APP_ROOT}/release-command-runs"
FAIL_FLAG = f"{layout.APP_ROOT}/release-command-fails"
# One line per run (release and instance), slow enough that two instances overlap, then a
# failure while the flag exists, with a line of output like a migration's traceback.
COMMAND = (
    f'echo "$APP_RELEASE $(hostname)" >> {RUNS}; sleep 2; '
    f"test ! -e {FAIL_FLAG} || {{ echo migration exploded >&2; exit 3; }}"
)
SECOND_RELEASE, THIRD_RELEASE = "e2e-release-2", "e2e-release-3"


@pytest.fixture(scope="module")
def stack() -> Iterator[Deployment]:
    """A web and a Beat worker with their secrets fetched and the release installed (the
    oneshots before the release command), nothing else started."""
    deployment = Deployment.create(worker_count=1, web_count=1, address_salt=5, config={"app.releaseCommand": COMMAND})
    try:
        for machine in deployment.machines.values():
            machine.run_oneshot(layout.SECRETS_UNIT)
            machine.run_oneshot(layout.RELEASE_UNIT)
        runs = deployment.site.srv_app / RUNS.removeprefix(layout.APP_ROOT + "/")
        runs.touch()
        runs.chmod(0o666)  # the app user appends to it
        yield deployment
    finally:
        deployment.close()


def host_file(stack: Deployment, path: str) -> Path:
    return stack.site.srv_app / path.removeprefix(layout.APP_ROOT + "/")


def runs(stack: Deployment, release: str) -> list[str]:
    """The instances that ran the command for this release, in order."""
    lines = host_file(stack, RUNS).read_text().splitlines()
    return [host for run_release, host in (line.split() for line in lines) if run_release == release]


def records(stack: Deployment, release: str) -> dict[str, str | None]:
    broker = stack.redis.client()
    found = {record: broker.get(layout.release_command_key(release, record)) for record in ("lock", "done")}
    return {record: value.decode() if value else None for record, value in found.items()}


def boot_run(machine: SimulatedMachine) -> Callable[[], str]:
    """Runs the machine's app-release-command.service once; returns what it logged (or the
    harness's error, which carries the log, when it exits non-zero)."""

    def run() -> str:
        before = len(machine.log(layout.RELEASE_COMMAND_UNIT))
        try:
            machine.run_oneshot(layout.RELEASE_COMMAND_UNIT, timeout=120)
        except RuntimeError as failed:
            return f"FAILED {failed}"
        return machine.log(layout.RELEASE_COMMAND_UNIT)[before:]

    return run


def together(*runs: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(runs)

    def one(index: int) -> None:
        results[index] = runs[index]()

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


def executor_for(stack: Deployment) -> LocalExecutor:
    def enter_machine(instance: Instance, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        return run_as_root(stack.machines[instance.name], ["/usr/bin/env", f"PATH={SYSTEM_PATH}", *argv], timeout)

    return LocalExecutor(enter_machine)


def instance(machine: SimulatedMachine) -> Instance:
    return Instance(machine.hostname, machine.hostname, "worker" if "worker" in machine.hostname else "web", False)


def renamed(artifact: Path, release: str) -> bytes:
    """The artifact with its manifest.json naming `release` (app-release refuses a manifest made
    for another release)."""
    out = io.BytesIO()
    with tarfile.open(artifact, "r:gz") as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.dumps({**json.loads(data.read()), "release": release}).encode()
                member.size, data = len(manifest), io.BytesIO(manifest)
            target.addfile(member, data)
    return out.getvalue()


def install_and_activate(stack: Deployment, release: str, scratch: Path) -> None:
    """Another release, installed by app-release from an artifact (the first one's content under
    a new name, with its checksum), as `ops deploy` installs it on every instance first, then
    made current (the harness's machines share the release tree)."""
    artifact = scratch / f"{release}.tar.gz"
    artifact.write_bytes(renamed(stack.base / "artifacts" / f"{stack.release}.tar.gz", release))
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    Path(f"{artifact}.sha256").write_text(f"{digest}  {artifact.name}\n")
    for step in (["install", release, "--artifact", str(artifact)], ["activate", release]):
        done = run_as_root(stack.web, [layout.SYSTEM_PYTHON, layout.RELEASE_BIN, *step])
        assert done.returncode == 0, done.stderr


def test_a_failing_command_leaves_no_record_and_returns_its_status_and_output(stack: Deployment) -> None:
    flag = host_file(stack, FAIL_FLAG)
    flag.touch()
    try:
        (result,) = together(boot_run(stack.web))
    finally:
        flag.unlink()
    assert isinstance(result, str) and result.startswith("FAILED "), result
    assert "exited 3" in result
    assert "migration exploded" in result
    assert f"app-release-command: release {stack.release}: the command exited 3" in result
    assert runs(stack, stack.release) == [stack.web.hostname]
    assert records(stack, stack.release) == {"lock": None, "done": None}


def test_two_instances_booting_together_run_it_once_and_a_reboot_does_not_run_it_again(stack: Deployment) -> None:
    # After the failure above: the next attempt runs it again, on one of the two only.
    before = runs(stack, stack.release)
    logs = together(boot_run(stack.web), boot_run(stack.beat_machine))
    assert all(isinstance(log, str) and not log.startswith("FAILED") for log in logs), logs
    ran = runs(stack, stack.release)[len(before) :]
    assert len(ran) == 1, ran
    runner, waiter = (logs[0], logs[1]) if ran == [stack.web.hostname] else (logs[1], logs[0])
    assert f"release {stack.release}: the command exited 0" in str(runner)
    assert f"release {stack.release}: already ran (" in str(waiter)
    assert records(stack, stack.release)["lock"] is None
    assert str(records(stack, stack.release)["done"]).endswith(f" on {ran[0]}")

    (log,) = together(boot_run(stack.beat_machine))  # a reboot
    assert f"release {stack.release}: already ran (" in str(log)
    assert len(runs(stack, stack.release)) == len(before) + 1


def test_a_boot_and_a_deploy_of_the_next_release_run_it_once(stack: Deployment, tmp_path: Path) -> None:
    install_and_activate(stack, SECOND_RELEASE, tmp_path)
    assert records(stack, SECOND_RELEASE) == {"lock": None, "done": None}
    # The deploy's step on the Beat instance, while the web instance boots with that release
    # active (a new instance launched just after the deploy recorded it, say).
    executor = executor_for(stack)

    def deploy_step() -> CommandResult:
        return executor.run(
            instance(stack.beat_machine), "release command", release_command_script(SECOND_RELEASE), 120
        )

    # Failing first, as the deploy sees it: the status and the command's own output come back.
    flag = host_file(stack, FAIL_FLAG)
    flag.touch()
    try:
        failed = deploy_step()
    finally:
        flag.unlink()
    assert (failed.ok, failed.exit_code) == (False, 3), failed
    assert "migration exploded\n" in failed.stdout
    assert f"release {SECOND_RELEASE}: the command exited 3" in failed.stdout
    assert records(stack, SECOND_RELEASE) == {"lock": None, "done": None}

    boot, deployed = together(boot_run(stack.web), deploy_step)
    assert isinstance(deployed, CommandResult) and deployed.ok, deployed
    assert isinstance(boot, str) and not boot.startswith("FAILED"), boot
    assert len(runs(stack, SECOND_RELEASE)) == 2  # the failed run, then one of the two
    assert str(records(stack, SECOND_RELEASE)["done"]).endswith(f" on {runs(stack, SECOND_RELEASE)[1]}")
    assert "already ran" in boot + deployed.stdout

    # The deploy's step for a release not installed on the instance: one line, nothing run.
    missing = executor.run(instance(stack.beat_machine), "release command", release_command_script("r-nowhere"), 60)
    assert (missing.ok, missing.stdout) == (False, "release not installed here\n")
    # An instance from before app.releaseCommand (the ops tool updated before `pulumi up`).
    env_file = stack.beat_machine.host_path(layout.RELEASE_COMMAND_ENV)
    kept = env_file.read_bytes()
    env_file.unlink()
    try:
        older = executor.run(
            instance(stack.beat_machine), "release command", release_command_script(SECOND_RELEASE), 60
        )
    finally:
        env_file.write_bytes(kept)
        env_file.chmod(0o640)
    assert not older.ok
    assert older.stdout == (
        f"no {layout.RELEASE_COMMAND_ENV}: the instance predates app.releaseCommand; pulumi up replaces it\n"
    )


def test_a_lock_whose_holder_died_expires_and_a_waiting_instance_runs_it(stack: Deployment, tmp_path: Path) -> None:
    install_and_activate(stack, THIRD_RELEASE, tmp_path)
    # What an instance that died holding the lock leaves: its token, expiring (here in 4 s).
    stack.redis.client().set(layout.release_command_key(THIRD_RELEASE, "lock"), "prod-gone:4242:0f0f", ex=4)
    started = time.monotonic()
    (log,) = together(boot_run(stack.web))
    waited = time.monotonic() - started
    assert f"release {THIRD_RELEASE}: waiting while prod-gone:4242 runs it" in str(log)
    assert f"release {THIRD_RELEASE}: the command exited 0" in str(log)
    assert runs(stack, THIRD_RELEASE) == [stack.web.hostname]
    assert waited > 3, waited
    assert records(stack, THIRD_RELEASE)["lock"] is None


def test_ops_exec_runs_manage_py_as_the_app_user_with_the_env_files(
    stack: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "import os; print(os.getuid(), os.environ['APP_RELEASE'], os.environ['SAMPLE_API_KEY'][:15], "
        "os.getcwd()); raise SystemExit(7)"
    )
    worker = instance(stack.beat_machine)
    status = run_one_off(executor_for(stack), worker, ["manage.py", "shell", "-c", code], 120)
    captured = capsys.readouterr()
    assert status == 7, captured.err
    current = run_as_root(stack.web, [layout.SYSTEM_PYTHON, layout.RELEASE_BIN, "current"]).stdout.strip()
    # The last line: Django's shell may say first how many models it imported.
    assert (
        captured.out.splitlines()[-1] + "\n"
        == f"{APP_UID} {current} sample-api-key- {layout.RELEASES_DIR}/{current}/src\n"
    )
    assert captured.err.splitlines()[-1] == f"exit 7 on {worker.label}"
