"""The machines: one MachineGroup per kind (web, worker, Beat, any kind the program adds), each a
launch template carrying that kind's rendered user-data, the Auto Scaling group that launches it,
and its hooks.

A terminating worker (scale-in, refresh, replacement) is held by a lifecycle hook until the
agent on it has stopped its Celery workers warm and completed the lifecycle action; each worker
kind's role may complete actions only on its own group (web's, none).

Auto Scaling replaces a failed instance, and a changed template (image, user-data, type) rolls
out by instance refresh, a few instances at a time, never the whole fleet in one step. Celery
Beat runs on its own group of exactly one, replaced terminate-first by every kind of replacement
(its instance maintenance policy), so two Beats never overlap.

The image is pinned per stack: `ami_id` when given, else Debian's newest image at the first
`up`, kept (ignore_changes) until the user names a newer one, so an `up` never replaces machines
because Debian published an image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from aws_limits import MAX_LIFECYCLE_HOLD_SECONDS, MIN_LIFECYCLE_HOLD_SECONDS
from components.signals import GROUP_METRICS, CeleryMetrics, backlog_per_instance

# Debian's own AWS account: the official Debian 12 AMIs. Debian 12 is what this repository's VM
# tests boot, so the OS, cloud-init (22.4) and systemd (252) tested here are the ones deployed.
DEBIAN_AMI_OWNER = "136693071363"
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}
# Debian's AMIs boot from this device.
ROOT_DEVICE = "/dev/xvda"
# From launch to serving: longer than the slowest boot-to-ready measured (docs/performance.md,
# bench/vm_boot.py; tests/test_fleet.py holds the two together), so a slow first boot is not
# replaced as unhealthy before it is ready.
BOOT_GRACE_SECONDS = 300


@dataclass(frozen=True)
class GroupSize:
    min_size: int
    desired_capacity: int
    max_size: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.desired_capacity <= self.max_size:
            raise ValueError(f"sizes: {self}; need 0 <= min_size <= desired_capacity <= max_size")


@dataclass(frozen=True)
class WorkerScaling:
    """The worker group holds the backlog of every queue it serves, per in-service instance, at
    `target_backlog_per_instance` (target tracking, between the group's min and max sizes)."""

    celery: CeleryMetrics
    target_backlog_per_instance: float

    def __post_init__(self) -> None:
        if not self.target_backlog_per_instance > 0:
            raise ValueError(f"target_backlog_per_instance: {self.target_backlog_per_instance}; must be above 0")


@dataclass(frozen=True)
class MachineGroupArgs:
    """One kind of machine (config/kinds.py, as plain values): its sizes, type, security group,
    rendered user-data (gzip+base64), tags, role and how its instances are replaced."""

    kind: str  # the kind's name: its resources are <fleet>-<kind>...
    size: GroupSize
    instance_type: str
    security_group_id: pulumi.Input[str]
    user_data: pulumi.Input[str]
    tags: dict[str, str]
    # Its own instance profile and role: the role may report its own group's instances unhealthy
    # (a failed boot) and, with a termination hold, complete its own group's lifecycle actions.
    instance_profile_name: pulumi.Input[str]
    role_name: pulumi.Input[str]
    # Capacity kept in service during an instance refresh.
    min_healthy_percentage: int
    # Every replacement terminates the old instance before launching the new one.
    terminate_first: bool = False
    # The load balancer's target groups: the group then uses the load balancer's health checks.
    target_group_arns: Sequence[pulumi.Input[str]] = ()
    # How long the termination hook holds a terminating instance (30 to 7200 s, Auto Scaling's
    # limit) while its agent stops Celery warm; None: no hook.
    termination_hold_seconds: int | None = None
    # None: the group keeps its desired capacity.
    scaling: WorkerScaling | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_healthy_percentage <= 100:
            raise ValueError(f"min_healthy_percentage: {self.min_healthy_percentage}; allowed: 0 to 100")
        hold = self.termination_hold_seconds
        if hold is not None and not MIN_LIFECYCLE_HOLD_SECONDS <= hold <= MAX_LIFECYCLE_HOLD_SECONDS:
            raise ValueError(
                f"termination_hold_seconds: {hold}; "
                f"allowed: {MIN_LIFECYCLE_HOLD_SECONDS} to {MAX_LIFECYCLE_HOLD_SECONDS}"
            )


@dataclass(frozen=True)
class FleetArgs:
    """The machine kinds, and what their launch templates share."""

    kinds: Sequence[MachineGroupArgs]
    # An image to pin; None takes Debian 12's newest for the architecture once, then keeps it.
    ami_id: str | None
    architecture: str
    root_volume_gb: int
    # The stack key: the root volumes are encrypted with it, not the account's aws/ebs key.
    kms_key_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    # The termination hook the workers' agent completes.
    termination_hook_name: str

    def __post_init__(self) -> None:
        if self.architecture not in DEBIAN_ARCHITECTURES:
            raise ValueError(f"architecture: {self.architecture!r}; allowed: {', '.join(DEBIAN_ARCHITECTURES)}")
        if not self.subnet_ids:
            raise ValueError("subnet_ids: empty; needs at least one subnet")
        names = [kind.kind for kind in self.kinds]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"kinds: {names}; needs at least one, each named once")


class Fleet(pulumi.ComponentResource):
    # Kind -> its Auto Scaling group's name.
    group_names: dict[str, pulumi.Output[str]]
    # The image the templates launch, and Debian's newest (what a "refresh AMI" would take).
    image_id: pulumi.Output[str]
    latest_debian_image_id: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:fleet:Fleet", name, None, opts)
        self._args = args
        self.latest_debian_image_id = self._latest_debian_image()
        image: pulumi.Input[str] = args.ami_id or self.latest_debian_image_id
        groups = [MachineGroup(name, kind, args, image, parent=self) for kind in args.kinds]
        self.group_names = {group.kind: group.group_name for group in groups}
        self.image_id = groups[0].image_id
        self.register_outputs(
            {
                "groupNames": self.group_names,
                "imageId": self.image_id,
                "latestDebianImageId": self.latest_debian_image_id,
            }
        )

    def _latest_debian_image(self) -> pulumi.Output[str]:
        architecture = self._args.architecture
        return aws.ec2.get_ami_output(
            most_recent=True,
            owners=[DEBIAN_AMI_OWNER],
            filters=[
                {"name": "name", "values": [f"debian-12-{DEBIAN_ARCHITECTURES[architecture]}-*"]},
                {"name": "architecture", "values": [architecture]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
            opts=pulumi.InvokeOptions(parent=self),
        ).id


class MachineGroup(pulumi.ComponentResource):
    """One kind of machine: its launch template, the Auto Scaling group that launches it, and its
    hooks and role grants on that group. Its children were the Fleet's before kinds had their
    own component: each carries the Fleet as its former parent (an alias), so an existing stack
    keeps every resource."""

    group_name: pulumi.Output[str]
    image_id: pulumi.Output[str]

    def __init__(
        self, fleet_name: str, kind: MachineGroupArgs, fleet: FleetArgs, image: pulumi.Input[str], parent: Fleet
    ) -> None:
        super().__init__(
            "djangostack:fleet:MachineGroup", f"{fleet_name}-{kind.kind}", None, pulumi.ResourceOptions(parent=parent)
        )
        self.kind = kind.kind
        self._prefix, self._kind, self._args = fleet_name, kind, fleet
        self._former_parent = parent
        template, group = self._machines(image)
        self._report_failed_boots(group)
        if kind.termination_hold_seconds is not None:
            self._hold_terminating_workers(group, kind.termination_hold_seconds)
        if kind.scaling is not None:
            self._scale_on_backlog(group, kind.scaling)
        self.group_name = group.name
        self.image_id = template.image_id.apply(lambda value: value or "")
        self.register_outputs({"groupName": self.group_name, "imageId": self.image_id})

    def _child(self, ignore_changes: list[str] | None = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self, aliases=[pulumi.Alias(parent=self._former_parent)], ignore_changes=ignore_changes
        )

    def _hold_terminating_workers(self, group: aws.autoscaling.Group, hold_seconds: int) -> None:
        """The termination hook on one worker kind's group, and its role's right to complete it
        there only: a worker cannot release the Beat instance's termination, nor the reverse."""
        args, kind, role_name, child = self._args, self._kind.kind, self._kind.role_name, self._child()
        aws.autoscaling.LifecycleHook(
            f"{self._prefix}-{kind}-warm-stop",
            autoscaling_group_name=group.name,
            name=args.termination_hook_name,
            lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
            heartbeat_timeout=hold_seconds,
            # Without an answer (the agent died), the instance is terminated anyway: the
            # broker redelivers what it was running after the visibility timeout.
            default_result="CONTINUE",
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{self._prefix}-{kind}-complete-termination",
            role=role_name,
            policy=group.arn.apply(_complete_lifecycle_policy),
            opts=child,
        )

    def _report_failed_boots(self, group: aws.autoscaling.Group) -> None:
        """A kind's role may mark its own group's instances unhealthy (app-boot-failed, when a
        boot fails), no other group's: the group then replaces the instance."""
        aws.iam.RolePolicy(
            f"{self._prefix}-{self.kind}-report-failed-boot",
            role=self._kind.role_name,
            policy=group.arn.apply(_report_health_policy),
            opts=self._child(),
        )

    def _scale_on_backlog(self, group: aws.autoscaling.Group, scaling: WorkerScaling) -> None:
        """Target tracking on the backlog per in-service instance. Scale-in terminates through the
        warm-stop hook like any termination, so no running task is cut short."""
        query = backlog_per_instance(scaling.celery, group.name)
        metrics: list[Any] = [
            {
                "id": metric.query_id,
                "label": metric.label,
                "metric_stat": {
                    "metric": {
                        "namespace": metric.namespace,
                        "metric_name": metric.name,
                        "dimensions": [{"name": key, "value": value} for key, value in metric.dimensions],
                    },
                    "stat": metric.stat,
                },
                "return_data": False,
            }
            for metric in query.metrics
        ]
        metrics.append(
            {"id": "backlog_per_instance", "expression": query.expression, "label": query.label, "return_data": True}
        )
        aws.autoscaling.Policy(
            f"{self._prefix}-{self.kind}-backlog",
            autoscaling_group_name=group.name,
            policy_type="TargetTrackingScaling",
            # A new worker takes a boot to start consuming: its metric does not count before.
            estimated_instance_warmup=BOOT_GRACE_SECONDS,
            target_tracking_configuration={
                "target_value": scaling.target_backlog_per_instance,
                "customized_metric_specification": {"metrics": metrics},
            },
            opts=self._child(),
        )

    def _machines(self, image: pulumi.Input[str]) -> tuple[aws.ec2.LaunchTemplate, aws.autoscaling.Group]:
        """One kind of machine: its launch template and the group that launches it."""
        machine = self._kind
        kind, instance_type, security_group_id = machine.kind, machine.instance_type, machine.security_group_id
        user_data, kind_tags, instance_profile_name = machine.user_data, machine.tags, machine.instance_profile_name
        args = self._args
        resource_name = f"{self._prefix}-{kind}"
        template = aws.ec2.LaunchTemplate(
            resource_name,
            description=f"{kind} instances of {self._prefix}",
            image_id=image,
            instance_type=instance_type,
            iam_instance_profile={"name": instance_profile_name},
            # No key pair: instances are reached with SSM Session Manager. Private subnets, no
            # public address.
            network_interfaces=[
                {
                    "device_index": 0,
                    "associate_public_ip_address": "false",
                    "security_groups": [security_group_id],
                    "delete_on_termination": "true",
                }
            ],
            # IMDSv2 only, and a hop limit of 1 so nothing forwarded from the host can reach it.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "encrypted": "true",
                        "kms_key_id": args.kms_key_arn,
                        "volume_type": "gp3",
                        "volume_size": args.root_volume_gb,
                        "delete_on_termination": "true",
                    },
                }
            ],
            user_data=user_data,
            # Instances get their tags from the group (propagated at launch); volumes from here.
            tag_specifications=[{"resource_type": "volume", "tags": {**kind_tags, "Name": resource_name}}],
            update_default_version=True,
            tags=kind_tags,
            # A looked-up image is resolved once: later lookups (Debian publishes often) must
            # not change the template, or every `up` would roll the whole fleet.
            opts=self._child(ignore_changes=[] if args.ami_id else ["imageId"]),
        )
        return template, self._group(template)

    def _group(self, template: aws.ec2.LaunchTemplate) -> aws.autoscaling.Group:
        machine = self._kind
        kind, size, kind_tags, target_group_arns = machine.kind, machine.size, machine.tags, machine.target_group_arns
        min_healthy_percentage, terminate_first = machine.min_healthy_percentage, machine.terminate_first
        resource_name = f"{self._prefix}-{kind}"
        tags = {**kind_tags, "Name": resource_name}
        health_check: Literal["ELB", "EC2"] = "ELB" if target_group_arns else "EC2"
        return aws.autoscaling.Group(
            resource_name,
            min_size=size.min_size,
            desired_capacity=size.desired_capacity,
            max_size=size.max_size,
            vpc_zone_identifiers=list(self._args.subnet_ids),
            # The template's newest version, not "$Latest": a new version changes the group, and
            # that change starts the instance refresh.
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            target_group_arns=list(target_group_arns),
            # Web: an instance the load balancer finds unhealthy is replaced, after it had time to boot.
            health_check_type=health_check,
            health_check_grace_period=BOOT_GRACE_SECONDS,
            # The capacity alarms, the dashboard and the scaling policy read these (free at 1 minute).
            enabled_metrics=[aws.autoscaling.Metric(metric) for metric in GROUP_METRICS],
            metrics_granularity="1Minute",
            instance_refresh={
                "strategy": "Rolling",
                "preferences": {
                    "min_healthy_percentage": min_healthy_percentage,
                    # Launch before terminate where the minimum allows (AWS: max - min <= 100).
                    "max_healthy_percentage": min(200, min_healthy_percentage + 100),
                    "instance_warmup": str(BOOT_GRACE_SECONDS),
                    # A refresh whose new instances fail their health checks goes back to the
                    # previous template version by itself.
                    "auto_rollback": True,
                },
            },
            # terminate_first: every replacement (health, rebalance, refresh) terminates the old
            # instance before launching the new one; the instance refresh preferences above cover
            # refreshes only, and without this policy the others follow the account's default,
            # which may launch first (two Beats firing every schedule twice).
            instance_maintenance_policy=(
                {"min_healthy_percentage": 0, "max_healthy_percentage": 100} if terminate_first else None
            ),
            tags=[{"key": key, "value": value, "propagate_at_launch": True} for key, value in tags.items()],
            opts=self._child(),
        )


def _complete_lifecycle_policy(group_arn: str) -> str:
    statements = [
        # The agent finds its own group by its instance id; this call has no resource-level scope.
        {
            "Sid": "FindOwnGroup",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeAutoScalingInstances",
            "Resource": "*",
        },
        {
            "Sid": "CompleteOwnTermination",
            "Effect": "Allow",
            "Action": "autoscaling:CompleteLifecycleAction",
            "Resource": group_arn,
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def _report_health_policy(group_arn: str) -> str:
    statement = {
        "Sid": "ReportOwnHealth",
        "Effect": "Allow",
        "Action": "autoscaling:SetInstanceHealth",
        "Resource": group_arn,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)
