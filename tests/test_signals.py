"""The signal plan alone (pure, no Pulumi): what each stack shape watches, and properties every
signal keeps whatever the config (unique names, metric math that only names its own metrics)."""

from __future__ import annotations

import json
import re

import pytest

from components.signals import (
    CeleryMetrics,
    LoadBalancerIds,
    Metric,
    Query,
    Thresholds,
    WatchTargets,
    backlog_per_instance,
    dashboard_body,
    plan,
    query_id,
)

CELERY = CeleryMetrics(
    "DjangoStack/Celery", "QueueBacklog", "BeatHeartbeat", "Stack", "Queue", "prod", ("default", "long-running")
)
THRESHOLDS = Thresholds(75, 80, 1000, 10, 5, 2, 100, 10)


def targets(nodes: int = 2, balancer: bool = True, beat: bool = True, scaling: bool = True) -> WatchTargets[str]:
    groups = {"web": "g-web", "worker": "g-worker", **({"worker-beat": "g-beat"} if beat else {})}
    return WatchTargets(
        cache_node_ids=[f"rg-{n:03d}" for n in range(1, nodes + 1)],
        load_balancer=LoadBalancerIds("app/a/1", "targetgroup/t/2") if balancer else None,
        groups=groups,
        celery=CELERY,
        beat=beat,
        launch_grace_seconds=300,
        thresholds=THRESHOLDS,
        scaling_group="worker" if scaling else None,
        target_backlog_per_instance=20 if scaling else None,
    )


SHAPES = [
    targets(),
    targets(nodes=1, balancer=False, beat=False, scaling=False),
    targets(nodes=6),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_signal_has_its_own_key_and_its_math_names_only_its_metrics(shape: WatchTargets[str]) -> None:
    signals = plan(shape)
    keys = [signal.key for signal in signals]
    assert len(keys) == len(set(keys))
    for signal in signals:
        ids = [metric.query_id for metric in signal.query.metrics]
        assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids), signal.key
        if signal.query.expression is not None:
            named = set(re.findall(r"\b[a-z][a-z0-9_]*\b", signal.query.expression))
            assert named == set(ids), signal.key
        if signal.alarm is not None:
            # CloudWatch evaluates at most a day of 1-minute periods.
            assert 1 <= signal.alarm.periods <= 1440, signal.key


def test_what_each_stack_shape_watches() -> None:
    full, small = ({s.key for s in plan(t) if s.alarm} for t in SHAPES[:2])
    assert {"broker-replication-lag-001", "broker-replication-lag-002", "beat-heartbeat", "web-error-rate"} <= full
    assert "worker-beat-capacity" in full
    assert not {key for key in small if "replication-lag" in key or key.startswith("web-error") or "beat" in key}
    assert {"queue-backlog-default", "queue-backlog-long-running", "broker-memory-001", "web-capacity"} <= small
    assert len([key for key in (s.key for s in plan(SHAPES[2]) if s.alarm) if key.startswith("broker-memory-")]) == 6


def test_backlog_per_instance_sums_every_queue_over_the_groups_in_service_count() -> None:
    query = backlog_per_instance(CELERY, "g-worker")
    assert query.expression == "(backlog_0 + backlog_1) / in_service"
    assert [(m.name, dict(m.dimensions)) for m in query.metrics] == [
        ("QueueBacklog", {"Stack": "prod", "Queue": "default"}),
        ("QueueBacklog", {"Stack": "prod", "Queue": "long-running"}),
        ("GroupInServiceInstances", {"AutoScalingGroupName": "g-worker"}),
    ]


def test_query_ids_are_metric_math_names() -> None:
    assert query_id("in_service", "worker-beat") == "in_service_worker_beat"
    assert query_id("7", "x") == "m_7_x"


def test_a_query_without_math_reads_one_metric() -> None:
    metric = Metric("a", "N", "M", (), "Sum", "a")
    with pytest.raises(ValueError, match="exactly one metric"):
        Query((metric, metric))


def test_the_dashboard_lays_out_one_graph_per_panel_in_two_columns() -> None:
    widgets = json.loads(dashboard_body(plan(targets()), "eu-west-1"))["widgets"]
    panels = [w["properties"]["title"] for w in widgets]
    assert len(panels) == len(set(panels)) == len({s.panel for s in plan(targets())})
    assert [(w["x"], w["y"]) for w in widgets[:4]] == [(0, 0), (12, 0), (0, 6), (12, 6)]
    math = [w for w in widgets if any(isinstance(line[0], dict) for line in w["properties"]["metrics"])]
    for widget in math:
        # The metrics a line of math reads are drawn only through it.
        hidden = [line[-1] for line in widget["properties"]["metrics"] if isinstance(line[0], str)]
        assert all(options["visible"] is False for options in hidden), widget["properties"]["title"]
