"""What the stack watches, defined once: every metric (or metric math over metrics) that an alarm
pages on, the dashboard draws, or the worker group scales on. Pure: no Pulumi, no AWS.

The plan is generic in the type of the resource ids it names (a replication group's node, a load
balancer, a group): the alarms are built from it with Pulumi Outputs in those places, the
dashboard from the same plan once the ids are known (plain strings), so the two cannot drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

# Every metric here is read per minute: ElastiCache, the ALB and the group metrics publish at 1
# minute, the backlog publisher every 60 s.
PERIOD_SECONDS = 60
ELASTICACHE = "AWS/ElastiCache"
LOAD_BALANCER = "AWS/ApplicationELB"
AUTO_SCALING = "AWS/AutoScaling"
RDS = "AWS/RDS"
# What the groups must publish for the capacity alarms and the dashboard (1-minute group metrics
# are free of charge).
GROUP_METRICS = (
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupMinSize",
    "GroupMaxSize",
)

Id = TypeVar("Id")
Missing = Literal["breaching", "notBreaching", "ignore", "missing"]


@dataclass(frozen=True)
class Metric(Generic[Id]):
    """One CloudWatch metric and the statistic read from it each period."""

    query_id: str  # its name in metric math: a lowercase letter, then letters, digits, _
    namespace: str
    name: str
    dimensions: tuple[tuple[str, Id | str], ...]
    stat: str  # Maximum, Minimum, Average, Sum, or a percentile such as p99
    label: str


@dataclass(frozen=True)
class Query(Generic[Id]):
    """What a signal reads: one metric, or metric math over several (`expression` set)."""

    metrics: tuple[Metric[Id], ...]
    expression: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.expression is None and len(self.metrics) != 1:
            raise ValueError("a query without an expression reads exactly one metric")


@dataclass(frozen=True)
class AlarmRule:
    """When a signal pages: above (or below) the threshold for `periods` minutes in a row."""

    comparison: Literal["GreaterThanThreshold", "LessThanThreshold"]
    threshold: float
    periods: int
    missing: Missing
    # What it means and what to do: the alarm's description, and its line in docs/monitoring.md.
    meaning: str


@dataclass(frozen=True)
class Signal(Generic[Id]):
    """One line on the dashboard (in panel `panel`), and an alarm when `alarm` is set."""

    key: str  # unique per stack: the alarm's name is `<stack>-<key>`
    panel: str
    query: Query[Id]
    alarm: AlarmRule | None = None


@dataclass(frozen=True)
class Thresholds:
    broker_memory_percent: float
    broker_cpu_percent: float
    broker_connections: float
    replication_lag_seconds: float
    web_error_percent: float
    web_p99_seconds: float
    backlog_threshold: float
    backlog_minutes: int
    # The stack's database (database.mode rds); unused without one.
    database_cpu_percent: float = 80
    database_free_storage_bytes: float = 2 * 1024**3
    database_connections: float = 150


@dataclass(frozen=True)
class CeleryMetrics:
    """Where the Beat instance publishes (the machine contract, userdata/layout.py, passed in flat)."""

    namespace: str
    backlog_metric: str
    heartbeat_metric: str
    stack_dimension: str
    queue_dimension: str
    stack: str
    queues: tuple[str, ...]


@dataclass(frozen=True)
class LoadBalancerIds(Generic[Id]):
    # The ARN suffixes CloudWatch names them by: app/<name>/<id>, targetgroup/<name>/<id>.
    load_balancer: Id
    target_group: Id


@dataclass(frozen=True)
class WatchTargets(Generic[Id]):
    """What one stack runs, by the ids CloudWatch knows it by."""

    cache_node_ids: Sequence[Id]  # the replication group's member clusters, primary first
    load_balancer: LoadBalancerIds[Id] | None
    groups: Mapping[str, Id]  # kind (web, worker, worker-beat) -> Auto Scaling group name
    celery: CeleryMetrics
    beat: bool
    # A group is still booting a replacement this long after a launch: a shortfall pages after it.
    launch_grace_seconds: int
    thresholds: Thresholds
    scaling_group: str | None = None  # the kind that scales on backlog per instance
    target_backlog_per_instance: float | None = None
    # The RDS instance identifier of the stack's database (database.mode rds), or None.
    database: Id | None = None


def query_id(*parts: str) -> str:
    """A metric math id from words: `backlog`, `long-running` -> `backlog_long_running`."""
    text = "_".join(re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_") for part in parts)
    return text if re.match(r"[a-z]", text) else f"m_{text}"


def backlog_metrics(celery: CeleryMetrics) -> tuple[Metric[str], ...]:
    """Each queue's backlog (messages waiting, all priorities), as the Beat instance publishes it."""
    return tuple(
        Metric(
            query_id("backlog", str(index)),
            celery.namespace,
            celery.backlog_metric,
            ((celery.stack_dimension, celery.stack), (celery.queue_dimension, queue)),
            "Maximum",
            f"backlog {queue}",
        )
        for index, queue in enumerate(celery.queues)
    )


def backlog_per_instance(celery: CeleryMetrics, group_name: Id) -> Query[Id]:
    """Messages waiting in every queue the group serves, per in-service instance of the group:
    what the worker group's target tracking policy holds at its target."""
    # Their dimensions hold no resource id, so they fit a plan of any id type.
    backlogs: tuple[Metric[Id], ...] = backlog_metrics(celery)  # type: ignore[assignment]
    in_service: Metric[Id] = Metric(
        "in_service",
        AUTO_SCALING,
        "GroupInServiceInstances",
        (("AutoScalingGroupName", group_name),),
        "Average",
        "in service",
    )
    total = " + ".join(metric.query_id for metric in backlogs)
    return Query((*backlogs, in_service), f"({total}) / in_service", "backlog per in-service instance")


def plan(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    """Every signal of the stack, in dashboard order."""
    return [
        *_broker(targets),
        *_database(targets),
        *_celery(targets),
        *_web(targets),
        *_groups(targets),
    ]


def _broker(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    limits = targets.thresholds
    signals: list[Signal[Id]] = []
    for index, node in enumerate(targets.cache_node_ids, start=1):
        number = f"{index:03d}"

        def node_metric(name: str, stat: str, number: str = number, node: Id = node) -> Query[Id]:
            dimension: tuple[str, Id | str] = ("CacheClusterId", node)
            return Query((Metric(query_id(name, number), ELASTICACHE, name, (dimension,), stat, f"node {number}"),))

        signals += [
            Signal(
                f"broker-memory-{number}",
                "Broker memory used (%)",
                node_metric("DatabaseMemoryUsagePercentage", "Maximum"),
                AlarmRule(
                    "GreaterThanThreshold",
                    limits.broker_memory_percent,
                    3,
                    "missing",
                    "The broker is filling up; with noeviction a full broker refuses new tasks. "
                    "Look for a queue nobody consumes (the backlog alarms, `python -m ops verify`), "
                    "purge what is not needed, or move to a larger redis.nodeType.",
                ),
            ),
            Signal(
                f"broker-cpu-{number}",
                "Broker engine CPU (%)",
                node_metric("EngineCPUUtilization", "Average"),
                AlarmRule(
                    "GreaterThanThreshold",
                    limits.broker_cpu_percent,
                    5,
                    "missing",
                    "Redis's single engine thread is busy: commands queue and tasks publish late. "
                    "Check the slow log for expensive commands, then a larger redis.nodeType.",
                ),
            ),
            Signal(
                f"broker-connections-{number}",
                "Broker connections",
                node_metric("CurrConnections", "Maximum"),
                AlarmRule(
                    "GreaterThanThreshold",
                    limits.broker_connections,
                    5,
                    "missing",
                    "More clients than the fleet should ever open: a connection leak or a reconnect "
                    "loop. Find the instances with `ss -tn dport = 6379` and restart what leaks; "
                    "raise alerts.brokerConnections only if the fleet really grew.",
                ),
            ),
            Signal(
                f"broker-evictions-{number}",
                "Broker evictions",
                node_metric("Evictions", "Sum"),
                AlarmRule(
                    "GreaterThanThreshold",
                    0,
                    1,
                    "notBreaching",
                    "Keys were evicted: queued tasks may be lost. It must stay 0 under noeviction, "
                    "so the parameter group was changed: restore maxmemory-policy noeviction.",
                ),
            ),
        ]
        if len(targets.cache_node_ids) > 1:
            # Only a replica reports it, and the roles swap on failover: every node has the alarm.
            signals.append(
                Signal(
                    f"broker-replication-lag-{number}",
                    "Broker replication lag (s)",
                    node_metric("ReplicationLag", "Maximum"),
                    AlarmRule(
                        "GreaterThanThreshold",
                        limits.replication_lag_seconds,
                        5,
                        "notBreaching",
                        "The replica is behind the primary: a failover now loses the tasks of the "
                        "last seconds. Usually write bursts or a busy network; if it persists, a "
                        "larger redis.nodeType.",
                    ),
                )
            )
    return signals


def _database(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    if targets.database is None:
        return []
    limits, identifier = targets.thresholds, targets.database

    def rds(name: str, stat: str, label: str) -> Query[Id]:
        dimension: tuple[str, Id | str] = ("DBInstanceIdentifier", identifier)
        return Query((Metric(query_id("database", name), RDS, name, (dimension,), stat, label),))

    return [
        Signal(
            "database-cpu",
            "Database CPU (%)",
            rds("CPUUtilization", "Average", "CPU"),
            AlarmRule(
                "GreaterThanThreshold",
                limits.database_cpu_percent,
                5,
                "missing",
                "PostgreSQL is busy: queries queue and requests slow down. Performance Insights "
                "shows the top statements; add an index, or a larger database.instanceClass.",
            ),
        ),
        Signal(
            "database-free-storage",
            "Database free storage (bytes)",
            rds("FreeStorageSpace", "Minimum", "free storage"),
            AlarmRule(
                "LessThanThreshold",
                limits.database_free_storage_bytes,
                5,
                "missing",
                "The database is running out of storage; when it is full, writes fail. Raise "
                "database.allocatedStorageGb (or set maxAllocatedStorageGb for autoscaling).",
            ),
        ),
        Signal(
            "database-connections",
            "Database connections",
            rds("DatabaseConnections", "Maximum", "connections"),
            AlarmRule(
                "GreaterThanThreshold",
                limits.database_connections,
                5,
                "missing",
                "More connections than the fleet should open: a leak, or more gunicorn and Celery "
                "processes than the instance class allows (max_connections follows its memory).",
            ),
        ),
    ]


def _celery(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    celery, limits = targets.celery, targets.thresholds
    signals: list[Signal[Id]] = [
        Signal(
            f"queue-backlog-{queue}",
            "Queue backlog (messages waiting)",
            Query((metric,)),  # type: ignore[arg-type]
            AlarmRule(
                "GreaterThanThreshold",
                limits.backlog_threshold,
                limits.backlog_minutes,
                "notBreaching",
                "Tasks wait longer than they should: the workers cannot keep up, or none consume "
                "this queue. Check the worker group is at maxSize (then raise it) and that its "
                "celery-worker units run (`python -m ops verify`).",
            ),
        )
        for queue, metric in zip(celery.queues, backlog_metrics(celery), strict=True)
    ]
    if targets.scaling_group is not None:
        signals.append(
            Signal(
                "worker-backlog-per-instance",
                f"Worker backlog per instance (scaling target {targets.target_backlog_per_instance:g})",
                backlog_per_instance(celery, targets.groups[targets.scaling_group]),
            )
        )
    if targets.beat:
        heartbeat: Metric[Id] = Metric(
            "heartbeat",
            celery.namespace,
            celery.heartbeat_metric,
            ((celery.stack_dimension, celery.stack),),
            "Minimum",
            "Beat alive",
        )
        signals.append(
            Signal(
                "beat-heartbeat",
                "Beat heartbeat",
                Query((heartbeat,)),
                AlarmRule(
                    "LessThanThreshold",
                    1,
                    2,
                    # No heartbeat at all is the failure this alarm is for.
                    "breaching",
                    "Beat sent no heartbeat for 2 minutes: periodic tasks are not being sent. "
                    "`python -m ops verify` checks the Beat instance; a Beat paused on purpose "
                    "(`python -m ops beat pause`) pages too until `beat resume`; the group "
                    "replaces a dead instance by itself.",
                ),
            )
        )
    return signals


def _web(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    ids, limits = targets.load_balancer, targets.thresholds
    if ids is None:
        return []
    balancer: tuple[str, Id | str] = ("LoadBalancer", ids.load_balancer)
    target_group: tuple[str, Id | str] = ("TargetGroup", ids.target_group)

    def alb(query: str, name: str, stat: str, label: str, *dimensions: tuple[str, Id | str]) -> Metric[Id]:
        return Metric(query, LOAD_BALANCER, name, dimensions, stat, label)

    requests = alb("requests", "RequestCount", "Sum", "requests", balancer)
    target_errors = alb("target_5xx", "HTTPCode_Target_5XX_Count", "Sum", "target 5xx", balancer)
    # 502/503/504 the load balancer answers itself (no healthy target): not in RequestCount.
    balancer_errors = alb("elb_5xx", "HTTPCode_ELB_5XX_Count", "Sum", "load balancer 5xx", balancer)
    return [
        Signal("web-requests", "Web requests per minute", Query((requests,))),
        Signal(
            "web-error-rate",
            "Web 5xx (% of requests)",
            # No error data point means no error; no request at all leaves the rate undefined (no alarm).
            Query(
                (requests, target_errors, balancer_errors),
                "100 * (FILL(target_5xx, 0) + FILL(elb_5xx, 0)) / (FILL(requests, 0) + FILL(elb_5xx, 0))",
                "5xx %",
            ),
            AlarmRule(
                "GreaterThanThreshold",
                limits.web_error_percent,
                5,
                "notBreaching",
                "Users get server errors. Target 5xx: read gunicorn's journal on the web instances "
                "(a release gone bad: `python -m ops rollback`); load balancer 5xx: no healthy "
                "target, see the unhealthy-hosts alarm.",
            ),
        ),
        Signal(
            "web-unhealthy-hosts",
            "Web targets failing health checks",
            Query((alb("unhealthy", "UnHealthyHostCount", "Maximum", "unhealthy", target_group, balancer),)),
            AlarmRule(
                "GreaterThanThreshold",
                0,
                5,
                "notBreaching",
                "Web instances fail the health check for 5 minutes; the group replaces them, so a "
                "lasting alarm means new ones fail too: a bad release or user-data, see their "
                "journal and cloud-init log.",
            ),
        ),
        Signal(
            "web-latency-p99",
            "Web response time p99 (s)",
            Query((alb("latency_p99", "TargetResponseTime", "p99", "p99", balancer),)),
            AlarmRule(
                "GreaterThanThreshold",
                limits.web_p99_seconds,
                5,
                "notBreaching",
                "The slowest requests got slow: the web group is saturated (raise web.maxSize or "
                "web.gunicornWorkers) or a dependency is slow (the database, the broker).",
            ),
        ),
    ]


def _groups(targets: WatchTargets[Id]) -> list[Signal[Id]]:
    # Longer than a replacement takes to boot: a routine refresh or scale-out never pages.
    periods = -(-2 * targets.launch_grace_seconds // PERIOD_SECONDS)
    signals: list[Signal[Id]] = []
    for kind, group in targets.groups.items():
        dimension: tuple[str, Id | str] = ("AutoScalingGroupName", group)
        desired = Metric(
            query_id("desired", kind), AUTO_SCALING, "GroupDesiredCapacity", (dimension,), "Average", "desired"
        )
        in_service = Metric(
            query_id("in_service", kind), AUTO_SCALING, "GroupInServiceInstances", (dimension,), "Average", kind
        )
        signals += [
            Signal(f"{kind}-in-service", "Instances in service", Query((in_service,))),
            Signal(
                f"{kind}-capacity",
                "Instances missing (desired - in service)",
                Query((desired, in_service), f"{desired.query_id} - {in_service.query_id}", kind),
                AlarmRule(
                    "GreaterThanThreshold",
                    0,
                    periods,
                    "notBreaching",
                    "The group has had fewer instances in service than desired for "
                    f"{periods} minutes: launches fail. Its activity history says why "
                    "(`aws autoscaling describe-scaling-activities`): capacity, quota, image or key policy.",
                ),
            ),
        ]
    return signals


def dashboard_body(signals: Sequence[Signal[str]], region: str) -> str:
    """The CloudWatch dashboard (its JSON body): one graph per panel, a line per signal."""
    panels: dict[str, list[Signal[str]]] = {}
    for signal in signals:
        panels.setdefault(signal.panel, []).append(signal)
    widgets = []
    for index, (title, members) in enumerate(panels.items()):
        widgets.append(
            {
                "type": "metric",
                "x": (index % 2) * 12,
                "y": (index // 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": region,
                    "view": "timeSeries",
                    "period": PERIOD_SECONDS,
                    "metrics": [line for signal in members for line in _lines(signal)],
                },
            }
        )
    return json.dumps({"widgets": widgets}, sort_keys=True)


def _lines(signal: Signal[str]) -> list[list[object]]:
    query = signal.query
    lines: list[list[object]] = []
    for metric in query.metrics:
        options: dict[str, object] = {"id": metric.query_id, "stat": metric.stat, "label": metric.label}
        if query.expression is not None:
            options["visible"] = False
        lines.append([metric.namespace, metric.name, *[part for pair in metric.dimensions for part in pair], options])
    if query.expression is not None:
        lines.append([{"expression": query.expression, "id": query_id("e", signal.key), "label": query.label}])
    return lines
