"""Who is told, and what they see: the stack's alert topics with their email subscriptions, every
alarm of the signal plan (components/signals.py) sent to the alert topic, and the dashboard drawn
from the same plan.

Two topics, because ElastiCache cannot publish to an encrypted topic (its event notifications
show the topic inactive and stop): the alarms go to `<stack>-alerts`, encrypted with the stack
key; the broker's events (failover, node replaced) to `<stack>-broker-events`, which carries
nothing but event names and node ids. Both have the same subscribers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.signals import PERIOD_SECONDS, LoadBalancerIds, Signal, WatchTargets, dashboard_body, plan

# What the account itself may do with its topics: AWS's default topic policy, for this account only.
TOPIC_OWNER_ACTIONS = (
    "SNS:GetTopicAttributes",
    "SNS:SetTopicAttributes",
    "SNS:AddPermission",
    "SNS:RemovePermission",
    "SNS:DeleteTopic",
    "SNS:Subscribe",
    "SNS:ListSubscriptionsByTopic",
    "SNS:Publish",
)


def alarm_arn_pattern(partition: str, region: str, account: str, alarm_prefix: str) -> str:
    return f"arn:{partition}:cloudwatch:{region}:{account}:alarm:{alarm_prefix}*"


def _owner_and_tls(arn: str, partition: str, account: str) -> list[dict[str, Any]]:
    return [
        {
            "Sid": "AccountOwnsTopic",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
            "Action": list(TOPIC_OWNER_ACTIONS),
            "Resource": arn,
        },
        {
            # AWS's recommendation for SNS: refuse publishing over plain HTTP.
            "Sid": "PublishOverTlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "SNS:Publish",
            "Resource": arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]


def alarm_topic_policy(arn: str, partition: str, region: str, account: str, alarm_prefix: str) -> dict[str, Any]:
    """CloudWatch may publish the stack's alarms (by their names) here, nothing else outside the account."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StackAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "SNS:Publish",
                "Resource": arn,
                "Condition": {
                    "ArnLike": {"aws:SourceArn": alarm_arn_pattern(partition, region, account, alarm_prefix)},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            },
            *_owner_and_tls(arn, partition, account),
        ],
    }


def events_topic_policy(arn: str, partition: str, account: str) -> dict[str, Any]:
    """ElastiCache's service principal publishes for the account's groups only (AWS: the condition
    must be AWS:SourceOwner, not aws:SourceAccount, or it marks the topic inactive); never
    `{"AWS": "*"}`, which lets any principal that can claim the account publish (checkov CKV_AWS_385)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ElastiCacheEventsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "elasticache.amazonaws.com"},
                "Action": "SNS:Publish",
                "Resource": arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
            },
            *_owner_and_tls(arn, partition, account),
        ],
    }


@dataclass(frozen=True)
class AlertTopicsArgs:
    region: str
    account_id: pulumi.Input[str]
    # Fixed names: the stack key's policy names the alarm topic (an encryption context) before it exists.
    alarm_topic_name: str
    events_topic_name: str
    # The alarms' names start with this: only they may publish to the alarm topic.
    alarm_prefix: str
    kms_key_arn: pulumi.Input[str]
    emails: Sequence[str]
    tags: dict[str, str]
    partition: str = "aws"  # the region's: the topic policies' ARNs start with arn:<partition>

    def __post_init__(self) -> None:
        lowered = [email.lower() for email in self.emails]
        if len(set(lowered)) != len(lowered):
            raise ValueError(f"emails: {list(self.emails)}; each address once")


class AlertTopics(pulumi.ComponentResource):
    alarm_topic_arn: pulumi.Output[str]
    events_topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AlertTopicsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:alerting:AlertTopics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = pulumi.Output.from_input(args.account_id)
        alarms = aws.sns.Topic(
            f"{name}-alerts",
            name=args.alarm_topic_name,
            kms_master_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-alerts",
            arn=alarms.arn,
            policy=pulumi.Output.all(alarms.arn, account).apply(
                lambda values: json.dumps(
                    alarm_topic_policy(values[0], args.partition, args.region, values[1], args.alarm_prefix),
                    sort_keys=True,
                )
            ),
            opts=child,
        )
        # ElastiCache refuses encrypted topics (see the module's docstring).
        events = aws.sns.Topic(f"{name}-broker-events", name=args.events_topic_name, tags=args.tags, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-broker-events",
            arn=events.arn,
            policy=pulumi.Output.all(events.arn, account).apply(
                lambda values: json.dumps(events_topic_policy(values[0], args.partition, values[1]), sort_keys=True)
            ),
            opts=child,
        )
        for topic_kind, topic in (("alerts", alarms), ("broker-events", events)):
            for email in args.emails:
                # Pending until the recipient confirms from the mail AWS sends.
                aws.sns.TopicSubscription(
                    f"{name}-{topic_kind}-{email.lower()}",
                    topic=topic.arn,
                    protocol="email",
                    endpoint=email,
                    opts=child,
                )
        self.alarm_topic_arn = alarms.arn
        self.events_topic_arn = events.arn
        self.register_outputs({"alarmTopicArn": alarms.arn, "eventsTopicArn": events.arn})


@dataclass(frozen=True)
class MonitoringArgs:
    region: str
    # What the stack runs, by the ids CloudWatch knows it by (Outputs until the resources exist).
    targets: WatchTargets[pulumi.Input[str]]
    alarm_prefix: str
    alarm_topic_arn: pulumi.Input[str]
    dashboard_name: str
    tags: dict[str, str]


class Monitoring(pulumi.ComponentResource):
    """Every alarm of the plan, and the dashboard of the same plan."""

    alarm_names: list[str]
    dashboard_name: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:alerting:Monitoring", name, None, opts)
        self._args = args
        self.alarm_names = []
        for signal in plan(args.targets):
            if signal.alarm is not None:
                self.alarm_names.append(self._alarm(name, signal))
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.dashboard_name,
            dashboard_body=self._dashboard_body(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"alarmNames": self.alarm_names, "dashboardName": self.dashboard_name})

    def _alarm(self, name: str, signal: Signal[pulumi.Input[str]]) -> str:
        args, rule, query = self._args, signal.alarm, signal.query
        assert rule is not None
        alarm_name = f"{args.alarm_prefix}{signal.key}"
        reading: dict[str, Any]
        if query.expression is None:
            (metric,) = query.metrics
            statistic = (
                {"extended_statistic": metric.stat} if metric.stat.startswith("p") else {"statistic": metric.stat}
            )
            reading = {
                "namespace": metric.namespace,
                "metric_name": metric.name,
                "dimensions": dict(metric.dimensions),
                "period": PERIOD_SECONDS,
                **statistic,
            }
        else:
            reading = {
                "metric_queries": [
                    *(
                        {
                            "id": metric.query_id,
                            "metric": {
                                "namespace": metric.namespace,
                                "metric_name": metric.name,
                                "dimensions": dict(metric.dimensions),
                                "period": PERIOD_SECONDS,
                                "stat": metric.stat,
                            },
                            "return_data": False,
                        }
                        for metric in query.metrics
                    ),
                    {"id": "result", "expression": query.expression, "label": query.label, "return_data": True},
                ]
            }
        aws.cloudwatch.MetricAlarm(
            f"{name}-{signal.key}",
            name=alarm_name,
            alarm_description=rule.meaning,
            comparison_operator=rule.comparison,
            threshold=rule.threshold,
            evaluation_periods=rule.periods,
            datapoints_to_alarm=rule.periods,
            treat_missing_data=rule.missing,
            # Told when it starts and when it is over.
            alarm_actions=[args.alarm_topic_arn],
            ok_actions=[args.alarm_topic_arn],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
            **reading,
        )
        return alarm_name

    def _dashboard_body(self) -> pulumi.Output[str]:
        targets = self._args.targets
        balancer = targets.load_balancer
        ids: list[pulumi.Input[str]] = [
            *targets.cache_node_ids,
            *([balancer.load_balancer, balancer.target_group] if balancer else []),
            *targets.groups.values(),
            *([targets.database] if targets.database is not None else []),
        ]

        def render(values: list[str]) -> str:
            nodes = len(targets.cache_node_ids)
            rest = values[nodes:]
            resolved_balancer = LoadBalancerIds(rest[0], rest[1]) if balancer else None
            database = values.pop() if targets.database is not None else None
            groups = values[len(values) - len(targets.groups) :]
            resolved = WatchTargets[str](
                cache_node_ids=values[:nodes],
                load_balancer=resolved_balancer,
                groups=dict(zip(targets.groups, groups, strict=True)),
                celery=targets.celery,
                beat=targets.beat,
                launch_grace_seconds=targets.launch_grace_seconds,
                thresholds=targets.thresholds,
                scaling_group=targets.scaling_group,
                target_backlog_per_instance=targets.target_backlog_per_instance,
                database=database,
            )
            return dashboard_body(plan(resolved), self._args.region)

        return pulumi.Output.all(*ids).apply(render)
