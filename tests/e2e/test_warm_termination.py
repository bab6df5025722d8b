"""Warm termination on the running stack: a worker that Auto Scaling holds in Terminating:Wait
finishes the task it is running (executed once, not redelivered), and only then is the
lifecycle action completed.

The agent is the rendered app-warm-stop.service, started as its unit says, on a real worker of
the running stack. Its AWS side is moto's Auto Scaling and the loopback IMDSv2 and
CompleteLifecycleAction stand-ins (e2e_harness/autoscaling.py). The stack runs without systemd:
`systemctl` on the agent's PATH hands each request to the harness (e2e_harness/systemd.py), which
stops the unit as systemd would (KillMode=mixed: SIGTERM to Celery's main process, then wait up
to TimeoutStopSec)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness.autoscaling import GROUP, Standin, worker_group
from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.systemd import SystemdStandin

from userdata.layout import TERMINATION_HOOK, WARM_STOP_UNIT, queue_of_worker_unit


@pytest.fixture
def group() -> Iterator[Standin]:
    with worker_group() as standin:
        yield standin


def enqueue(running: Deployment, key: str, seconds: float) -> None:
    code = f"from myapp.tasks import record_execution\nrecord_execution.delay({key!r}, {seconds})"
    result = running.django(code, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def starts(running: Deployment, key: str) -> list[dict[str, str]]:
    entries = [json.loads(e) for e in running.ledger().lrange("ledger:started:log", 0, -1)]
    return [e for e in entries if e["key"] == key]


def executed(running: Deployment, key: str) -> int:
    return int(running.ledger().hget("ledger:executed", key) or 0)


def test_a_terminating_worker_finishes_its_task_then_completes_the_lifecycle_action(
    live: Deployment, group: Standin, tmp_path: Path
) -> None:
    key = f"terminating-{time.time_ns()}"
    enqueue(live, key, seconds=4.0)
    wait_until(lambda: starts(live, key), timeout=30)
    node = starts(live, key)[0]["worker"]
    machine = live.machines[node.split("@", 1)[1]]
    systemd = SystemdStandin(machine, tmp_path / "bin")
    try:
        machine.stop(WARM_STOP_UNIT)  # the copy booted with the real IMDS address
        agent = machine.start(
            WARM_STOP_UNIT,
            extra_env={
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": group.url,
                "AWS_ENDPOINT_URL_AUTOSCALING": group.url,
                **systemd.environment(WARM_STOP_UNIT),
            },
        )
        group.lifecycle_state = "Terminated"  # the task is running: Auto Scaling holds the instance
        agent.wait(timeout=120)
        log = machine.log(WARM_STOP_UNIT)
        assert agent.returncode == 0, log[-3000:]
    finally:
        machine.stop(WARM_STOP_UNIT)  # `live` restarts it as booted
        systemd.close()

    assert executed(live, key) == 1  # finished by the stopping worker
    assert len(starts(live, key)) == 1  # and never redelivered
    worker_units = {unit for unit, _, _ in systemd.stopped}
    assert worker_units == {u for u in machine.units if queue_of_worker_unit(u) or u == "celery-beat.service"}
    assert all(status == 0 for _, _, status in systemd.stopped), systemd.stopped
    assert "Warm shutdown" in machine.log(f"celery-worker-{node.split('@')[0]}.service")
    ((completed_at, action),) = group.completed
    assert completed_at >= max(when for _, when, _ in systemd.stopped)
    assert (action["LifecycleHookName"], action["AutoScalingGroupName"], action["InstanceId"]) == (
        TERMINATION_HOOK,
        GROUP,
        group.instance_id,
    )
    assert action["LifecycleActionResult"] == "CONTINUE"
