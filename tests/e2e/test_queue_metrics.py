"""The backlog publisher for real: the rendered app-queue-metrics.service, run as its unit says on
the Beat instance, reads real Celery messages (sent by the sample app's tasks with priorities, no
worker consuming) from a real redis-server over TLS with AUTH, and publishes to CloudWatch's
stand-in on loopback (moto). What CloudWatch then holds equals the queue lengths, and Beat's
heartbeat follows Beat's unit (`systemctl is-active`, answered by e2e_harness/systemd.py)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.machine import SimulatedMachine
from e2e_harness.systemd import SystemdStandin

from ops.stack import program_project
from userdata import layout

# The rendered prod stack's own namespace, as the Beat's unit passes it.
NAMESPACE = layout.metrics_namespace(program_project(), "prod")
# Sent by the app: record_execution goes to `default`, generate_report is routed to `long`.
# None: no priority given. Each lands in the list of its kombu priority step (0, 3, 6, 9).
SENT = {
    ("record_execution", "default"): [None, 0, 1, 3, 5, 6, 9, 9],
    ("generate_report", "long"): [None, 4, 8],
}
EXPECTED = {"default": 8, "long": 3}


@pytest.fixture(scope="module")
def beat_only() -> Iterator[Deployment]:
    """One machine, the Beat instance, with its oneshots run and no Celery unit started: what is
    queued stays queued."""
    deployment = Deployment.create(worker_count=1, web_count=0, address_salt=3)
    try:
        machine = deployment.beat_machine
        for unit in machine.enabled_services:
            if machine.service(unit).type == "oneshot":
                machine.run_oneshot(unit)
        yield deployment
    finally:
        deployment.close()


def send_with_priorities(stack: Deployment, machine: SimulatedMachine) -> None:
    lines = ["from myapp import tasks"]
    for (task, _), priorities in SENT.items():
        for number, priority in enumerate(priorities):
            options = "" if priority is None else f", priority={priority}"
            lines.append(f"tasks.{task}.apply_async(('metrics-{number}',){options})")
    result = stack.django("\n".join(lines), machine=machine)
    assert result.returncode == 0, result.stderr[-2000:]


def kombu_counts(stack: Deployment, machine: SimulatedMachine) -> dict[str, int]:
    """Each queue's size as kombu itself reports it (a passive declare on the app's connection)."""
    code = (
        "import json\nfrom proj.celery import app\n"
        "with app.connection_for_write() as connection:\n"
        "    channel = connection.default_channel\n"
        f"    counts = {{q: channel.queue_declare(q, passive=True).message_count for q in {sorted(EXPECTED)}}}\n"
        "print(json.dumps(counts))"
    )
    result = stack.django(code, machine=machine)
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def published(stack: Deployment, statistic: str) -> dict[str, float | None]:
    """The statistic (Maximum or SampleCount) over the last minutes of each metric the Beat
    instance publishes."""
    cloudwatch = stack.store.client("cloudwatch")
    stack_dimension = {"Name": layout.STACK_DIMENSION, "Value": "prod"}
    metrics = {
        queue: {
            "MetricName": layout.QUEUE_BACKLOG_METRIC,
            "Dimensions": [stack_dimension, {"Name": layout.QUEUE_DIMENSION, "Value": queue}],
        }
        for queue in EXPECTED
    }
    metrics["heartbeat"] = {"MetricName": layout.BEAT_HEARTBEAT_METRIC, "Dimensions": [stack_dimension]}
    now = datetime.datetime.now(datetime.UTC)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": f"m{index}",
                "Label": name,
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, **metric},
                    "Period": 600,
                    "Stat": statistic,
                },
            }
            for index, (name, metric) in enumerate(metrics.items())
        ],
        StartTime=now - datetime.timedelta(minutes=10),
        EndTime=now + datetime.timedelta(minutes=1),
    )
    # Periods are aligned to the clock: two runs a minute apart may fall into two of them.
    combine = {"Maximum": max, "SampleCount": sum}[statistic]
    return {r["Label"]: combine(r["Values"]) if r["Values"] else None for r in answer["MetricDataResults"]}


def test_published_backlog_equals_the_queue_lengths_and_the_heartbeat_follows_beat(
    beat_only: Deployment, tmp_path: Path
) -> None:
    machine = beat_only.beat_machine
    systemd = SystemdStandin(machine, tmp_path / "bin")
    try:
        send_with_priorities(beat_only, machine)
        # Several priority lists per queue, so a publisher reading only the queue's own list fails.
        keys = {key.decode() for key in beat_only.redis.client().keys("*")}
        assert {"default", "default\x06\x163", "default\x06\x166", "default\x06\x169", "long\x06\x163"} <= keys
        assert kombu_counts(beat_only, machine) == EXPECTED

        machine.run_oneshot(layout.QUEUE_METRICS_UNIT, extra_env=systemd.environment(layout.QUEUE_METRICS_UNIT))
        log = machine.log(layout.QUEUE_METRICS_UNIT)
        assert "backlog default=8 long=3; beat down" in log, log[-2000:]
        listed = beat_only.store.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"]
        assert sorted((m["MetricName"], len(m["Dimensions"])) for m in listed) == [
            (layout.BEAT_HEARTBEAT_METRIC, 1),
            (layout.QUEUE_BACKLOG_METRIC, 2),
            (layout.QUEUE_BACKLOG_METRIC, 2),
        ]
        assert published(beat_only, "Maximum") == {**EXPECTED, "heartbeat": 0.0}

        machine.start(layout.BEAT_UNIT)
        wait_until(lambda: "beat: Starting" in machine.log(layout.BEAT_UNIT), timeout=60)
        machine.run_oneshot(layout.QUEUE_METRICS_UNIT, extra_env=systemd.environment(layout.QUEUE_METRICS_UNIT))
        assert "beat alive" in machine.log(layout.QUEUE_METRICS_UNIT)
        assert published(beat_only, "Maximum")["heartbeat"] == 1.0
        assert published(beat_only, "SampleCount")["heartbeat"] == 2.0
    finally:
        systemd.close()
        if layout.BEAT_UNIT in machine.processes:
            machine.stop(layout.BEAT_UNIT)
