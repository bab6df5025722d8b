"""Who is told and what they see: the alert topics (encrypted, policies parsed as JSON), the email
subscriptions, every alarm's inputs (metric, dimensions, statistic, threshold, periods, actions),
the metric math, the dashboard drawn from the same plan, the worker group's scaling policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.alerting import AlertTopics, AlertTopicsArgs
from components.fleet import BOOT_GRACE_SECONDS
from components.signals import GROUP_METRICS
from offline_render.fake_aws import ACCOUNT, AUTOSCALING_GROUP_TYPE
from offline_render.program import StackRender
from tests.conftest import SMALL, named, of_type, only, rendered

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
ALARM_TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:prod-alerts"
EVENTS_TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:prod-broker-events"
NODES = ("prod-redis-group-id-001", "prod-redis-group-id-002")  # the mock group's id, -001, -002
EMAILS = ["ops@example.com", "oncall+django@example.org"]
PROD_METRICS = "DjangoStack/Celery/django-stack/prod"  # the prod stack's own metrics namespace
# One render per override set: every config key of `alerts` changed at once.
TUNED = {
    "alerts": {
        "emails": EMAILS,
        "brokerMemoryPercent": 60,
        "brokerCpuPercent": 70,
        "brokerConnections": 500,
        "replicationLagSeconds": 30,
        "webErrorPercent": 1.5,
        "webP99Seconds": 0.8,
        "backlogThreshold": 250,
        "backlogMinutes": 20,
    },
    "worker.scaling": {"targetBacklogPerInstance": 35},
}


@pytest.fixture
def tuned() -> StackRender:
    return rendered("prod", TUNED)


@pytest.fixture
def small() -> StackRender:
    """The small stack (tests/conftest.py SMALL): no load balancer, no Beat, one Redis node, a
    fixed worker group, no alert email."""
    return rendered("prod", SMALL)


def alarms(render: StackRender) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in render.of_type(ALARM)}


def reading(alarm: dict[str, Any]) -> tuple[Any, ...]:
    """A single-metric alarm's (namespace, metric, dimensions, statistic, period)."""
    statistic = alarm.get("statistic") or alarm.get("extendedStatistic")
    return alarm["namespace"], alarm["metricName"], alarm["dimensions"], statistic, alarm["period"]


def rule(alarm: dict[str, Any]) -> tuple[Any, ...]:
    """(comparison, threshold, evaluation periods, datapoints, missing data)."""
    return (
        alarm["comparisonOperator"],
        alarm["threshold"],
        alarm["evaluationPeriods"],
        alarm["datapointsToAlarm"],
        alarm["treatMissingData"],
    )


def queries(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {query["id"]: query for query in alarm["metricQueries"]}


# --- topics --------------------------------------------------------------------------------------


def test_alarms_go_to_an_encrypted_topic_and_broker_events_to_a_plain_one(prod: StackRender) -> None:
    topics = {r.inputs["name"]: r.inputs for r in prod.of_type(TOPIC)}
    assert set(topics) == {"prod-alerts", "prod-broker-events"}
    key = only(prod, "aws:kms/key:Key")
    # The stack key (the mock key's ARN ends in its id), the one the policy below lets CloudWatch use.
    assert topics["prod-alerts"]["kmsMasterKeyId"].startswith(f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/")
    assert "CloudWatchAlarmsPublishToStackTopic" in key["policy"]
    # AWS: ElastiCache cannot publish to an encrypted topic (it marks it inactive).
    assert "kmsMasterKeyId" not in topics["prod-broker-events"]
    group = only(prod, "aws:elasticache/replicationGroup:ReplicationGroup")
    assert group["notificationTopicArn"] == EVENTS_TOPIC
    assert prod.outputs["alarmTopicArn"] is not None


def topic_policy(render: StackRender, name: str) -> dict[str, dict[str, Any]]:
    document = json.loads(named(render, TOPIC_POLICY, name)["policy"])
    assert document["Version"] == "2012-10-17"
    return {statement["Sid"]: statement for statement in document["Statement"]}


def test_only_the_stacks_alarms_may_publish_to_the_alert_topic(prod: StackRender) -> None:
    statements = topic_policy(prod, "prod-alerts")
    assert named(prod, TOPIC_POLICY, "prod-alerts")["arn"] == ALARM_TOPIC
    assert statements["StackAlarmsPublish"] == {
        "Sid": "StackAlarmsPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "SNS:Publish",
        "Resource": ALARM_TOPIC,
        "Condition": {
            "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:prod-*"},
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
        },
    }
    assert set(statements) == {"StackAlarmsPublish", "AccountOwnsTopic", "PublishOverTlsOnly"}
    # Every alarm's name carries the prefix the policy allows.
    assert all(name.startswith("prod-") for name in alarms(prod))


def test_elasticache_alone_publishes_events_for_the_account_with_source_owner(prod: StackRender) -> None:
    statements = topic_policy(prod, "prod-broker-events")
    assert statements["ElastiCacheEventsPublish"] == {
        "Sid": "ElastiCacheEventsPublish",
        "Effect": "Allow",
        # ElastiCache's publisher, not {"AWS": "*"} (checkov CKV_AWS_385).
        "Principal": {"Service": "elasticache.amazonaws.com"},
        "Action": "SNS:Publish",
        "Resource": EVENTS_TOPIC,
        # AWS: aws:SourceAccount makes ElastiCache mark the topic inactive.
        "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}},
    }
    for name in ("prod-alerts", "prod-broker-events"):
        statements = topic_policy(prod, name)
        assert statements["AccountOwnsTopic"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
        assert statements["PublishOverTlsOnly"]["Effect"] == "Deny"
        assert statements["PublishOverTlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        wildcard = [
            sid
            for sid, statement in statements.items()
            if statement["Effect"] == "Allow" and "*" in str(statement["Principal"])
        ]
        assert wildcard == [], name


def test_each_email_subscribes_to_both_topics(tuned: StackRender, small: StackRender) -> None:
    assert small.of_type(SUBSCRIPTION) == []  # alerts.emails may be empty on an unprotected stack
    subscriptions = sorted(
        (r.inputs["topic"], r.inputs["endpoint"], r.inputs["protocol"]) for r in tuned.of_type(SUBSCRIPTION)
    )
    assert subscriptions == sorted((topic, email, "email") for topic in (ALARM_TOPIC, EVENTS_TOPIC) for email in EMAILS)


def test_alert_topics_alone_refuse_an_address_twice() -> None:
    with pytest.raises(ValueError, match="each address once"):
        AlertTopicsArgs(
            "eu-west-1", ACCOUNT, "t-alerts", "t-events", "t-", "key", ["a@example.com", "A@example.com"], {}
        )


def test_alert_topics_alone_name_their_topics_as_told(build_alone) -> None:
    args = AlertTopicsArgs(
        "eu-west-1", ACCOUNT, "t-alerts", "t-events", "t-", "arn:aws:kms:eu-west-1:1:key/k", ["a@example.com"], {}
    )
    built = build_alone(lambda: AlertTopics("t", args))
    assert {r.inputs["name"]: r.inputs.get("kmsMasterKeyId") for r in of_type(built, TOPIC)} == {
        "t-alerts": "arn:aws:kms:eu-west-1:1:key/k",
        "t-events": None,
    }
    assert len(of_type(built, SUBSCRIPTION)) == 2


# --- alarms --------------------------------------------------------------------------------------


def test_every_alarm_tells_the_alert_topic_when_it_starts_and_ends(prod: StackRender) -> None:
    for name, alarm in alarms(prod).items():
        assert alarm["alarmActions"] == alarm["okActions"] == [ALARM_TOPIC], name
        assert alarm["alarmDescription"], name
        assert "insufficientDataActions" not in alarm, name


def test_the_broker_is_watched_per_node_with_defaults(prod: StackRender) -> None:
    found = alarms(prod)
    for number, node in zip(("001", "002"), NODES, strict=True):
        by_node = {"CacheClusterId": node}
        expected = {
            "memory": (
                ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage", by_node, "Maximum", 60),
                ("GreaterThanThreshold", 75, 3, 3, "missing"),
            ),
            "cpu": (
                ("AWS/ElastiCache", "EngineCPUUtilization", by_node, "Average", 60),
                ("GreaterThanThreshold", 80, 5, 5, "missing"),
            ),
            "connections": (
                ("AWS/ElastiCache", "CurrConnections", by_node, "Maximum", 60),
                ("GreaterThanThreshold", 1000, 5, 5, "missing"),
            ),
            # Must stay 0: a single evicted key in a minute pages.
            "evictions": (
                ("AWS/ElastiCache", "Evictions", by_node, "Sum", 60),
                ("GreaterThanThreshold", 0, 1, 1, "notBreaching"),
            ),
            # Only a replica reports it; the roles swap on failover.
            "replication-lag": (
                ("AWS/ElastiCache", "ReplicationLag", by_node, "Maximum", 60),
                ("GreaterThanThreshold", 10, 5, 5, "notBreaching"),
            ),
        }
        for kind, (metric, when) in expected.items():
            alarm = found[f"prod-broker-{kind}-{number}"]
            assert (reading(alarm), rule(alarm)) == (metric, when), kind


def test_a_single_node_broker_has_no_replication_lag_alarm(small: StackRender) -> None:
    broker = sorted(name for name in alarms(small) if name.startswith("prod-broker-"))
    assert broker == [f"prod-broker-{kind}-001" for kind in ("connections", "cpu", "evictions", "memory")]


def test_each_queue_alarms_on_its_backlog_and_beat_on_its_heartbeat(prod: StackRender, tuned: StackRender) -> None:
    found = alarms(prod)
    for queue in ("default", "long"):
        alarm = found[f"prod-queue-backlog-{queue}"]
        assert reading(alarm) == (
            PROD_METRICS,
            "QueueBacklog",
            {"Stack": "prod", "Queue": queue},
            "Maximum",
            60,
        )
        assert rule(alarm) == ("GreaterThanThreshold", 100, 10, 10, "notBreaching")
        assert rule(alarms(tuned)[f"prod-queue-backlog-{queue}"])[:3] == ("GreaterThanThreshold", 250, 20)
    heartbeat = found["prod-beat-heartbeat"]
    assert reading(heartbeat) == (PROD_METRICS, "BeatHeartbeat", {"Stack": "prod"}, "Minimum", 60)
    # 2 periods without a heartbeat (missing data counts) pages.
    assert rule(heartbeat) == ("LessThanThreshold", 1, 2, 2, "breaching")


def test_no_beat_no_heartbeat_alarm_and_no_load_balancer_no_web_alarms(small: StackRender) -> None:
    names = set(alarms(small))
    assert "prod-beat-heartbeat" not in names and "prod-worker-beat-capacity" not in names
    assert not {name for name in names if name.startswith("prod-web-")} - {"prod-web-capacity"}
    assert {"prod-queue-backlog-default", "prod-queue-backlog-long"} <= names


def test_the_load_balancer_alarms_read_its_metrics(prod: StackRender) -> None:
    found = alarms(prod)
    # CloudWatch names them by their ARN suffixes (the mock ARNs end in <name>-id).
    load_balancer = {"LoadBalancer": "app/prod-alb/prod-alb-id"}
    target_group = {"TargetGroup": "targetgroup/prod-web/prod-web-id"}
    assert reading(found["prod-web-latency-p99"]) == (
        "AWS/ApplicationELB",
        "TargetResponseTime",
        load_balancer,
        "p99",
        60,
    )
    assert "statistic" not in found["prod-web-latency-p99"]  # a percentile is an extended statistic
    assert rule(found["prod-web-latency-p99"]) == ("GreaterThanThreshold", 2, 5, 5, "notBreaching")
    unhealthy = found["prod-web-unhealthy-hosts"]
    assert reading(unhealthy) == (
        "AWS/ApplicationELB",
        "UnHealthyHostCount",
        {**target_group, **load_balancer},
        "Maximum",
        60,
    )
    assert rule(unhealthy) == ("GreaterThanThreshold", 0, 5, 5, "notBreaching")
    for query in queries(found["prod-web-error-rate"]).values():
        assert query.get("metric", {"dimensions": load_balancer})["dimensions"] == load_balancer


def test_the_5xx_rate_counts_the_load_balancers_own_errors(prod: StackRender, tuned: StackRender) -> None:
    alarm = alarms(prod)["prod-web-error-rate"]
    found = queries(alarm)
    assert found["result"] == {
        "id": "result",
        "expression": "100 * (FILL(target_5xx, 0) + FILL(elb_5xx, 0)) / (FILL(requests, 0) + FILL(elb_5xx, 0))",
        "label": "5xx %",
        "returnData": True,
    }
    assert {
        qid: (q["metric"]["metricName"], q["metric"]["stat"], q["metric"]["period"])
        for qid, q in found.items()
        if "metric" in q
    } == {
        "requests": ("RequestCount", "Sum", 60),
        "target_5xx": ("HTTPCode_Target_5XX_Count", "Sum", 60),
        "elb_5xx": ("HTTPCode_ELB_5XX_Count", "Sum", 60),
    }
    assert all(q["returnData"] is False for qid, q in found.items() if qid != "result")
    assert rule(alarm) == ("GreaterThanThreshold", 5, 5, 5, "notBreaching")
    assert alarms(tuned)["prod-web-error-rate"]["threshold"] == 1.5
    assert alarms(tuned)["prod-web-latency-p99"]["threshold"] == 0.8


def test_each_group_alarms_when_in_service_stays_below_desired(prod: StackRender) -> None:
    periods = -(-2 * BOOT_GRACE_SECONDS // 60)
    for kind in ("web", "worker", "worker-beat"):
        alarm = alarms(prod)[f"prod-{kind}-capacity"]
        found = queries(alarm)
        desired, in_service = f"desired_{kind.replace('-', '_')}", f"in_service_{kind.replace('-', '_')}"
        assert found["result"]["expression"] == f"{desired} - {in_service}"
        for qid, metric in ((desired, "GroupDesiredCapacity"), (in_service, "GroupInServiceInstances")):
            assert found[qid]["metric"] == {
                "namespace": "AWS/AutoScaling",
                "metricName": metric,
                "dimensions": {"AutoScalingGroupName": f"prod-{kind}"},
                "stat": "Average",
                "period": 60,
            }
        # Longer than a replacement takes to boot: a refresh or a scale-out does not page.
        assert rule(alarm) == ("GreaterThanThreshold", 0, periods, periods, "notBreaching")
        assert periods * 60 >= 2 * BOOT_GRACE_SECONDS


def test_every_group_collects_the_metrics_the_alarms_read(prod: StackRender) -> None:
    for group in prod.of_type(AUTOSCALING_GROUP_TYPE):
        assert group.inputs["enabledMetrics"] == list(GROUP_METRICS), group.name
        assert group.inputs["metricsGranularity"] == "1Minute", group.name
    assert {"GroupDesiredCapacity", "GroupInServiceInstances"} <= set(GROUP_METRICS)


def test_thresholds_follow_the_config(tuned: StackRender) -> None:
    found = alarms(tuned)
    assert {
        kind: found[f"prod-broker-{kind}-001"]["threshold"]
        for kind in ("memory", "cpu", "connections", "replication-lag")
    } == {
        "memory": 60,
        "cpu": 70,
        "connections": 500,
        "replication-lag": 30,
    }


# --- the worker group scales on the backlog ------------------------------------------------------


def test_the_worker_group_tracks_backlog_per_in_service_instance(prod: StackRender, tuned: StackRender) -> None:
    (policy,) = prod.of_type("aws:autoscaling/policy:Policy")
    inputs = policy.inputs
    assert inputs["autoscalingGroupName"] == "prod-worker"
    assert inputs["policyType"] == "TargetTrackingScaling"
    assert inputs["estimatedInstanceWarmup"] == BOOT_GRACE_SECONDS
    tracking = inputs["targetTrackingConfiguration"]
    assert tracking["targetValue"] == 20
    assert "disableScaleIn" not in tracking  # scale-in on: through the warm-stop hook
    metrics = {m["id"]: m for m in tracking["customizedMetricSpecification"]["metrics"]}
    assert metrics["backlog_per_instance"] == {
        "id": "backlog_per_instance",
        "expression": "(backlog_0 + backlog_1) / in_service",
        "label": "backlog per in-service instance",
        "returnData": True,
    }
    for qid, queue in (("backlog_0", "default"), ("backlog_1", "long")):
        assert metrics[qid]["metricStat"] == {
            "metric": {
                "namespace": PROD_METRICS,
                "metricName": "QueueBacklog",
                "dimensions": [{"name": "Stack", "value": "prod"}, {"name": "Queue", "value": queue}],
            },
            "stat": "Maximum",
        }
    assert metrics["in_service"]["metricStat"]["metric"]["dimensions"] == [
        {"name": "AutoScalingGroupName", "value": "prod-worker"}
    ]
    assert [m["returnData"] for m in metrics.values()].count(True) == 1
    (tuned_policy,) = tuned.of_type("aws:autoscaling/policy:Policy")
    assert tuned_policy.inputs["targetTrackingConfiguration"]["targetValue"] == 35


def test_scale_in_goes_through_the_warm_stop_hook(prod: StackRender) -> None:
    (policy,) = prod.of_type("aws:autoscaling/policy:Policy")
    hooks = [r.inputs for r in prod.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")]
    scaled = policy.inputs["autoscalingGroupName"]
    assert [(h["lifecycleTransition"], h["name"]) for h in hooks if h["autoscalingGroupName"] == scaled] == [
        ("autoscaling:EC2_INSTANCE_TERMINATING", "celery-warm-stop")
    ]


def test_beat_and_web_never_scale_and_a_fixed_worker_group_has_no_policy(prod: StackRender) -> None:
    assert [p.inputs["autoscalingGroupName"] for p in prod.of_type("aws:autoscaling/policy:Policy")] == ["prod-worker"]
    # A fixed worker group has none though Beat runs: staging's (0 to 0). (The small stack has no
    # Beat either, which would hide a fixed group's policy.)
    assert rendered("staging").of_type("aws:autoscaling/policy:Policy") == []
    # Without Beat nothing publishes the backlog: no policy to scale on it, whatever the sizes.
    assert rendered("prod", {"worker.beat": False}).of_type("aws:autoscaling/policy:Policy") == []


# --- the dashboard -------------------------------------------------------------------------------


def dashboard(render: StackRender) -> dict[str, list[list[Any]]]:
    (board,) = render.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert board.inputs["dashboardName"] == "django-stack-prod"
    widgets = json.loads(board.inputs["dashboardBody"])["widgets"]
    assert {w["properties"]["region"] for w in widgets} == {"eu-west-1"}
    return {w["properties"]["title"]: w["properties"]["metrics"] for w in widgets}


def test_the_dashboard_draws_what_the_issue_asks_for(prod: StackRender) -> None:
    panels = dashboard(prod)
    assert list(panels) == [
        "Broker memory used (%)",
        "Broker engine CPU (%)",
        "Broker connections",
        "Broker evictions",
        "Broker replication lag (s)",
        "Queue backlog (messages waiting)",
        "Worker backlog per instance (scaling target 20)",
        "Beat heartbeat",
        "Web requests per minute",
        "Web 5xx (% of requests)",
        "Web targets failing health checks",
        "Web response time p99 (s)",
        "Instances in service",
        "Instances missing (desired - in service)",
    ]
    assert [line[:6] for line in panels["Queue backlog (messages waiting)"]] == [
        [PROD_METRICS, "QueueBacklog", "Stack", "prod", "Queue", queue] for queue in ("default", "long")
    ]
    assert [line[:4] for line in panels["Broker memory used (%)"]] == [
        ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", node] for node in NODES
    ]
    assert [line[3] for line in panels["Instances in service"]] == ["prod-web", "prod-worker", "prod-worker-beat"]


def test_every_alarm_is_a_line_on_the_dashboard_reading_the_same_metrics(prod: StackRender) -> None:
    # CloudWatch names a metric by its namespace, name and the *set* of its dimensions: an alarm's
    # dimensions are a map (the engine hands them over in no fixed order), a dashboard line lists
    # them as name, value pairs in any order. Compared as sets, as CloudWatch does.
    lines = [line for panel in dashboard(prod).values() for line in panel]
    drawn = {metric_identity(line[0], line[1], line[2:-1]) for line in lines if isinstance(line[0], str)}
    expressions = {line[0]["expression"] for line in lines if isinstance(line[0], dict)}
    for name, alarm in alarms(prod).items():
        if "metricQueries" in alarm:
            found = queries(alarm)
            assert found["result"]["expression"] in expressions, name
            metrics = [q["metric"] for q in found.values() if "metric" in q]
        else:
            metrics = [alarm]
        for metric in metrics:
            dims = [part for pair in metric["dimensions"].items() for part in pair]
            assert metric_identity(metric["namespace"], metric["metricName"], dims) in drawn, name


def metric_identity(namespace: str, name: str, dimensions: list[str]) -> tuple[str, str, frozenset[tuple[str, str]]]:
    """(namespace, metric, {(dimension, value)}) from a dashboard line's flat name, value list."""
    return namespace, name, frozenset(zip(dimensions[::2], dimensions[1::2], strict=True))


def test_metric_ids_are_unique_in_every_widget(prod: StackRender, small: StackRender) -> None:
    for render in (prod, small):
        for title, lines in dashboard(render).items():
            ids = [line[-1]["id"] for line in lines]
            assert len(ids) == len(set(ids)), title
