"""The termination agent (userdata/files/app-warm-stop) run as the instance runs it: Debian's
/usr/bin/python3 and python3-boto3, against moto's Auto Scaling on loopback with a worker group,
its instance and the stack's termination hook, an IMDSv2 stand-in that reports the instance's
target lifecycle state and a recording stand-in for CompleteLifecycleAction (e2e_harness/
autoscaling.py). systemd is a `systemctl` on PATH here that records the stop and takes 2 s, as a
warm stop would; test_warm_termination.py runs the same agent against the running stack's real
Celery workers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness.autoscaling import GROUP, REGION, Standin, worker_group

from tests.machine_scripts import SYSTEM_PYTHON, shipped
from userdata.layout import TERMINATION_HOOK

AGENT = shipped("app-warm-stop")
# Records each call with a timestamp; `stop` takes as long as a warm stop of a short task.
SYSTEMCTL = """#!/bin/sh
echo "$(date +%s.%N) $*" >> "{log}"
case "$1" in
  list-units) echo "celery-worker-default.service loaded active running Celery worker"
              echo "celery-worker-long.service loaded active running Celery worker" ;;
  stop) sleep 2; echo "$(date +%s.%N) stopped" >> "{log}" ;;
esac
"""


@pytest.fixture
def group() -> Iterator[Standin]:
    with worker_group() as standin:
        yield standin


def start_agent(standin: Standin, bin_dir: Path) -> subprocess.Popen[str]:
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AWS_REGION": REGION,
        "LIFECYCLE_HOOK_NAME": TERMINATION_HOOK,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": standin.url,
        "AWS_ENDPOINT_URL_AUTOSCALING": standin.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return subprocess.Popen(
        [SYSTEM_PYTHON, str(AGENT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_terminating_worker_stops_its_celery_units_warm_then_completes_the_action(group, tmp_path):
    log = tmp_path / "systemctl.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(SYSTEMCTL.format(log=log))
    systemctl.chmod(0o755)
    agent = start_agent(group, bin_dir)
    try:
        time.sleep(7)  # more than one poll while InService (IMDSv2 only: the stand-in refuses a GET without a token)
        assert agent.poll() is None and not log.exists() and group.completed == []
        group.lifecycle_state = "Terminated"  # Auto Scaling put it in Terminating:Wait
        output, _ = agent.communicate(timeout=60)
    finally:
        agent.kill()
    assert agent.returncode == 0, output
    calls = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [call for _, call in calls] == [
        "list-units --plain --no-legend --type=service celery-worker-*.service celery-beat.service",
        "stop celery-worker-default.service celery-worker-long.service",
        "stopped",
    ]
    ((completed_at, action),) = group.completed
    assert completed_at >= float(calls[-1][0])  # only once the units had stopped
    assert {k: action[k] for k in ("LifecycleHookName", "AutoScalingGroupName", "InstanceId")} == {
        "LifecycleHookName": TERMINATION_HOOK,
        "AutoScalingGroupName": GROUP,
        "InstanceId": group.instance_id,
    }
    assert action["LifecycleActionResult"] == "CONTINUE"
    assert f"completed {TERMINATION_HOOK} for {group.instance_id}" in output
