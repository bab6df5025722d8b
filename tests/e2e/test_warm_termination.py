"""Warm termination on the running stack: a worker that Auto Scaling holds in Terminating:Wait
finishes the task it is running (executed once, not redelivered), and only then is the
lifecycle action completed.

The agent is the rendered app-warm-stop.service, started as its unit says, on a real worker of
the running stack. Its AWS side is moto's Auto Scaling and the loopback IMDSv2 and
CompleteLifecycleAction stand-ins (e2e_harness/autoscaling.py). The stack runs without systemd,
so `systemctl` on the agent's PATH hands each request to the harness, which stops the unit as
systemd would (KillMode=mixed: SIGTERM to Celery's main process, then wait up to
TimeoutStopSec)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from e2e_harness.autoscaling import GROUP, Standin, worker_group
from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.machine import SimulatedMachine

from userdata.layout import TERMINATION_HOOK, WARM_STOP_UNIT, queue_of_worker_unit

SYSTEMCTL = """#!/usr/bin/python3
import json, os, sys, urllib.request
request = urllib.request.Request(os.environ["SYSTEMCTL_STANDIN"], data=json.dumps(sys.argv[1:]).encode())
with urllib.request.urlopen(request, timeout=900) as response:
    sys.stdout.write(response.read().decode())
"""


class SystemdStandin:
    """What `systemctl list-units` and `systemctl stop` do, done by the harness on one machine."""

    def __init__(self, machine: SimulatedMachine) -> None:
        self.machine = machine
        self.stopped: list[tuple[str, float, int]] = []  # unit, when it had stopped, exit status
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                argv = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = standin.run(argv).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def run(self, argv: list[str]) -> str:
        if argv[0] == "list-units":
            running = [u for u in self.machine.processes if queue_of_worker_unit(u) or u == "celery-beat.service"]
            return "".join(f"{unit} loaded active running\n" for unit in sorted(running))
        assert argv[0] == "stop", argv
        for unit in argv[1:]:
            _, status = self.machine.stop(unit)
            self.stopped.append((unit, time.time(), status))
        return ""


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
    systemd = SystemdStandin(machine)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    try:
        machine.stop(WARM_STOP_UNIT)  # the copy booted with the real IMDS address
        agent = machine.start(
            WARM_STOP_UNIT,
            extra_env={
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": group.url,
                "AWS_ENDPOINT_URL_AUTOSCALING": group.url,
                "SYSTEMCTL_STANDIN": systemd.url,
                "PATH": f"{bin_dir}:{machine.environment(machine.service(WARM_STOP_UNIT))['PATH']}",
            },
        )
        group.lifecycle_state = "Terminated"  # the task is running: Auto Scaling holds the instance
        agent.wait(timeout=120)
        log = machine.log(WARM_STOP_UNIT)
        assert agent.returncode == 0, log[-3000:]
    finally:
        machine.stop(WARM_STOP_UNIT)  # `live` restarts it as booted
        systemd.server.shutdown()

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
