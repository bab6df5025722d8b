"""The Celery broker: a private ElastiCache Redis replication group, TLS and AUTH from day one.

Turning TLS on later replaces the group (or takes two applies in `preferred` then `required`
mode), so it is created encrypted in transit and at rest, with a token, and never without.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components import secrets
from components.security import REDIS_PORT


@dataclass(frozen=True)
class RedisArgs:
    description: str
    # ElastiCache's Redis OSS or Valkey; both speak the protocol Celery's Redis transport uses.
    engine: Literal["redis", "valkey"]
    engine_version: str
    node_type: str
    # Read replicas beside the primary; one or more turns on automatic failover.
    replicas: int
    multi_az: bool
    snapshot_retention_days: int
    snapshot_window: str
    maintenance_window: str
    apply_immediately: bool
    # The slow log's and the engine log's groups (both delivered by ElastiCache).
    log_retention_days: int
    auth_token_update_strategy: Literal["ROTATE", "SET"]
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    # The token (a secret Output) and its version: sent to ElastiCache and to the parameter only
    # when the version changes, through write-only inputs that never enter the state.
    auth_token: pulumi.Input[str]
    auth_token_version: int
    # Encrypts the data at rest, its snapshots and both logs. Changing it replaces the group.
    kms_key_arn: pulumi.Input[str]
    # `pulumi destroy` and replacements of the group fail while set (docs/operations.md, "Deleting a stack on purpose").
    protect: bool
    # The Parameter Store name the instances read the token from.
    auth_token_parameter: str
    tags: dict[str, str]
    # Where ElastiCache sends the group's events (failover, node replaced); None: nowhere.
    notification_topic_arn: pulumi.Input[str] | None = None


class Redis(pulumi.ComponentResource):
    primary_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    replication_group_id: pulumi.Output[str]
    # Each member cluster (one node each), as CloudWatch names them: <group id>-001, -002, ...
    node_ids: list[pulumi.Output[str]]
    auth_token_parameter_name: pulumi.Output[str]
    auth_token_parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:redis:Redis", name, None, opts)
        tags = args.tags

        def renamed_from(old_suffix: str, **options: Any) -> pulumi.ResourceOptions:
            # Existing stacks keep (not replace) these under their current names (UPGRADE.md).
            return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"{name}-{old_suffix}")], **options)

        subnets = aws.elasticache.SubnetGroup(
            f"{name}-redis-subnets",
            description=f"{args.description}: private subnets only",
            subnet_ids=args.subnet_ids,
            tags=tags,
            opts=renamed_from("subnets"),
        )
        # redis7, valkey7, valkey8: the family follows engine and major version.
        family = f"{args.engine}{args.engine_version.split('.')[0]}"
        parameters = aws.elasticache.ParameterGroup(
            f"{name}-redis-params",
            family=family,
            description=f"{args.description}: broker data is never evicted",
            # A broker must refuse writes when full rather than silently drop queued tasks.
            parameters=[{"name": "maxmemory-policy", "value": "noeviction"}],
            tags=tags,
            opts=renamed_from("params"),
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-redis-slow-log",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            tags=tags,
            opts=renamed_from("slow-log"),
        )
        # The engine's own log (failovers, replica syncs, AUTH rejections): what explains a
        # broker event the alarms report.
        engine_log = aws.cloudwatch.LogGroup(
            f"{name}-redis-engine-log",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        has_replica = args.replicas > 0
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis-group",
            description=args.description,
            engine=args.engine,
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=1 + args.replicas,
            automatic_failover_enabled=has_replica,
            multi_az_enabled=args.multi_az,
            port=REDIS_PORT,
            parameter_group_name=parameters.name,
            subnet_group_name=subnets.name,
            security_group_ids=[args.security_group_id],
            at_rest_encryption_enabled=True,
            kms_key_id=args.kms_key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token_wo=args.auth_token,
            auth_token_wo_version=args.auth_token_version,
            auth_token_update_strategy=args.auth_token_update_strategy,
            snapshot_retention_limit=args.snapshot_retention_days,
            snapshot_window=args.snapshot_window,
            maintenance_window=args.maintenance_window,
            apply_immediately=args.apply_immediately,
            auto_minor_version_upgrade=True,
            notification_topic_arn=args.notification_topic_arn,
            # Whatever deletes the group leaves the queued tasks in a snapshot. The name is fixed:
            # a second deletion fails until the first snapshot is removed, never overwrites it.
            final_snapshot_identifier=f"{name}-redis-final",
            log_delivery_configurations=[
                {
                    "destination": log.name,
                    "destination_type": "cloudwatch-logs",
                    "log_format": "json",
                    "log_type": log_type,
                }
                for log, log_type in ((slow_log, "slow-log"), (engine_log, "engine-log"))
            ],
            tags=tags,
            opts=renamed_from("group", protect=args.protect),
        )

        # Stored only once the group has taken the token (with ROTATE, once the modification is
        # done): an instance booting in between must never fetch a token ElastiCache refuses.
        token_parameter = aws.ssm.Parameter(
            f"{name}-redis-auth-token",
            name=args.auth_token_parameter,
            description="Redis AUTH token (ElastiCache)",
            type="SecureString",
            key_id=args.kms_key_arn,
            value_wo=args.auth_token,
            value_wo_version=args.auth_token_version,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[group],
                # Existing stacks keep this parameter (UPGRADE.md, "The token parameter moved").
                aliases=[pulumi.Alias(parent=pulumi.create_urn(name, secrets.TYPE))],
            ),
        )

        self.primary_endpoint = group.primary_endpoint_address
        # With no replica there is no reader endpoint; the primary serves reads too.
        self.reader_endpoint = group.reader_endpoint_address if has_replica else group.primary_endpoint_address
        self.port = group.port.apply(lambda port: int(port or REDIS_PORT))
        self.replication_group_id = group.id
        self.node_ids = [group.id.apply(_member_cluster(number)) for number in range(1, 2 + args.replicas)]
        self.auth_token_parameter_name = token_parameter.name
        self.auth_token_parameter_arn = token_parameter.arn
        self.register_outputs(
            {
                "primaryEndpoint": self.primary_endpoint,
                "readerEndpoint": self.reader_endpoint,
                "port": self.port,
            }
        )


def _member_cluster(number: int) -> Callable[[str], str]:
    """ElastiCache names a replication group's member clusters <group id>-001, -002, ..."""
    return lambda group_id: f"{group_id}-{number:03d}"
