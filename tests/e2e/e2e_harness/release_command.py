"""Running app.releaseCommand on simulated instances: the rendered app-release-command.service
(a boot) and the ops tool's scripts (what `ops deploy` sends over SSM), side by side."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from e2e_harness.deployment import Deployment
from e2e_harness.machine import SimulatedMachine, run_as_root
from e2e_harness.units import SYSTEM_PATH
from ops.executor import LocalExecutor
from ops.inventory import Instance
from userdata import layout


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
    """Each run in a thread of its own, started at once; their results in order."""
    results: list[object] = [None] * len(runs)

    def one(index: int) -> None:
        results[index] = runs[index]()

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


def records(stack: Deployment, release: str) -> dict[str, str | None]:
    """The release's lock and done record in the broker."""
    broker = stack.redis.client()
    found = {record: broker.get(layout.release_command_key(release, record)) for record in ("lock", "done")}
    return {record: value.decode() if value else None for record, value in found.items()}


def executor_for(stack: Deployment) -> LocalExecutor:
    """The ops tool's executor, its scripts run as SSM runs them: root, with the instance role's
    credentials (the S3 and Parameter Store stand-ins)."""

    def enter_machine(instance: Instance, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
        environment = [f"{key}={value}" for key, value in stack.site.instance_environment.items()]
        machine = stack.machines[instance.name]
        return run_as_root(machine, ["/usr/bin/env", f"PATH={SYSTEM_PATH}", *environment, *argv], timeout)

    return LocalExecutor(enter_machine)


def instance(machine: SimulatedMachine) -> Instance:
    return Instance(machine.hostname, machine.hostname, "worker" if "worker" in machine.hostname else "web", False)


def instances(stack: Deployment) -> list[Instance]:
    """The stack's machines as the ops tool's inventory lists them (role and Beat from the tags)."""
    return [
        Instance(
            tags[layout.NAME_TAG],
            tags[layout.NAME_TAG],
            tags[layout.ROLE_TAG],
            tags.get(layout.BEAT_TAG) == layout.BEAT_TAG_VALUE,
        )
        for tags in (rendered.tags for rendered in stack.render.instances)
    ]
