"""The Celery broker: a private ElastiCache Redis replication group, TLS and AUTH from day one.

Turning TLS on later replaces the group (or takes two applies in `preferred` then `required`
mode), so it is created encrypted in transit and at rest, with a token, and never without.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import secrets
from components.security import REDIS_PORT
from settings import RedisSettings


@dataclass(frozen=True)
class RedisArgs:
    settings: RedisSettings
    description: str
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Input[str]
    auth_token: pulumi.Output[str]
    # The Parameter Store name the instances read the token from.
    auth_token_parameter: str
    tags: dict[str, str]


class Redis(pulumi.ComponentResource):
    primary_endpoint: pulumi.Output[str]
    reader_endpoint: pulumi.Output[str]
    port: pulumi.Output[int]
    replication_group_id: pulumi.Output[str]
    auth_token_parameter_name: pulumi.Output[str]
    auth_token_parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:redis:Redis", name, None, opts)
        settings, tags = args.settings, args.tags
        child = pulumi.ResourceOptions(parent=self)

        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            description=f"{args.description}: private subnets only",
            subnet_ids=args.subnet_ids,
            tags=tags,
            opts=child,
        )
        family = f"redis{settings.engine_version.split('.')[0]}"
        parameters = aws.elasticache.ParameterGroup(
            f"{name}-params",
            family=family,
            description=f"{args.description}: broker data is never evicted",
            # A broker must refuse writes when full rather than silently drop queued tasks.
            parameters=[{"name": "maxmemory-policy", "value": "noeviction"}],
            tags=tags,
            opts=child,
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-slow-log",
            retention_in_days=settings.slow_log_retention_days,
            tags=tags,
            opts=child,
        )
        has_replica = settings.replicas > 0
        group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            description=args.description,
            engine="redis",
            engine_version=settings.engine_version,
            node_type=settings.node_type,
            num_cache_clusters=1 + settings.replicas,
            automatic_failover_enabled=has_replica,
            multi_az_enabled=settings.multi_az,
            port=REDIS_PORT,
            parameter_group_name=parameters.name,
            subnet_group_name=subnets.name,
            security_group_ids=[args.security_group_id],
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=args.auth_token,
            auth_token_update_strategy=settings.auth_token_update_strategy,
            snapshot_retention_limit=settings.snapshot_retention_days,
            snapshot_window=settings.snapshot_window,
            maintenance_window=settings.maintenance_window,
            apply_immediately=settings.apply_immediately,
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[
                {
                    "destination": slow_log.name,
                    "destination_type": "cloudwatch-logs",
                    "log_format": "json",
                    "log_type": "slow-log",
                }
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["auth_token"]),
        )

        # Stored only once the group has taken the token (with ROTATE, once the modification is
        # done): an instance booting in between must never fetch a token ElastiCache refuses.
        token_parameter = aws.ssm.Parameter(
            f"{name}-redis-auth-token",
            name=args.auth_token_parameter,
            description="Redis AUTH token (ElastiCache)",
            type="SecureString",
            value=args.auth_token,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[group],
                additional_secret_outputs=["value"],
                # It was the Secrets component's child: the alias keeps it the same resource.
                aliases=[pulumi.Alias(parent=pulumi.create_urn(name, secrets.TYPE))],
            ),
        )

        self.primary_endpoint = group.primary_endpoint_address
        # With no replica there is no reader endpoint; the primary serves reads too.
        self.reader_endpoint = group.reader_endpoint_address if has_replica else group.primary_endpoint_address
        self.port = group.port.apply(lambda port: int(port or REDIS_PORT))
        self.replication_group_id = group.id
        self.auth_token_parameter_name = token_parameter.name
        self.auth_token_parameter_arn = token_parameter.arn
        self.register_outputs(
            {
                "primaryEndpoint": self.primary_endpoint,
                "readerEndpoint": self.reader_endpoint,
                "port": self.port,
            }
        )
