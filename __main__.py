"""Django + Celery + private TLS Redis on AWS: reads the stack config once, validates it, wires
the components in dependency order and exports what operators and the ops tool need."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi.runtime.config import CONFIG, get_config_env

from components.access import AccessArgs, InstanceAccess
from components.fleet import Fleet, FleetArgs
from components.network import Network, NetworkArgs
from components.redis import Redis, RedisArgs
from components.secrets import Secrets, SecretsArgs
from components.security import SecurityArgs, SecurityGroups
from settings import PROJECT, ConfigError, Settings, load_settings


def stack_config() -> dict[str, object]:
    """Every `django-stack:*` value the engine passed, so an unknown (misspelled) key is an
    error instead of a silently ignored setting. pulumi.Config can only look up known keys."""
    values = {**get_config_env(), **CONFIG.get()}
    prefix = f"{PROJECT}:"
    return {key.removeprefix(prefix): value for key, value in values.items() if key.startswith(prefix)}


def read_settings() -> Settings:
    try:
        return load_settings(stack_config(), stack=pulumi.get_stack(), region=pulumi.Config("aws").get("region"))
    except ConfigError as error:
        # RunError: the engine prints the message alone, without a Python traceback.
        raise pulumi.RunError(f"invalid stack config ({pulumi.get_stack()}):\n{error}") from None


settings = read_settings()
tags = {"Project": settings.project, "Stack": settings.stack}
name = settings.stack

network = Network(name, NetworkArgs(settings.network, settings.region, tags))
secrets = Secrets(
    name,
    SecretsArgs(
        django_secret_key_parameter=settings.parameter_name("django/secret-key"),
        auth_token_version=settings.redis.auth_token_version,
        tags=tags,
    ),
)
security = SecurityGroups(name, SecurityArgs(network.vpc_id, settings.web, tags))
redis = Redis(
    name,
    RedisArgs(
        settings=settings.redis,
        description=f"Celery broker for {settings.project} {settings.stack}",
        subnet_ids=network.private_subnet_ids,
        security_group_id=security.redis_security_group_id,
        auth_token=secrets.auth_token,
        auth_token_parameter=settings.parameter_name("redis/auth-token"),
        tags=tags,
    ),
)
# The app's own secrets exist already (the user creates them); the role may read exactly these.
caller, partition = aws.get_caller_identity_output(), aws.get_partition_output()
app_secret_arns = [
    pulumi.Output.concat(
        "arn:", partition.partition, ":ssm:", settings.region, ":", caller.account_id, ":parameter", parameter
    )
    for parameter in sorted(settings.app.secret_parameters.values())
]
access = InstanceAccess(
    name,
    AccessArgs(
        secret_parameter_arns=[
            redis.auth_token_parameter_arn,
            secrets.django_secret_key_parameter_arn,
            *app_secret_arns,
        ],
        artifact_location=(
            f"{settings.app.artifact_bucket}/{settings.app.artifact_prefix}" if settings.app.source == "s3" else None
        ),
        tags=tags,
    ),
)
fleet = Fleet(
    name,
    FleetArgs(
        settings=settings,
        subnet_ids=network.private_subnet_ids,
        web_security_group_id=security.web_security_group_id,
        worker_security_group_id=security.worker_security_group_id,
        instance_profile_name=access.instance_profile_name,
        redis_host=redis.primary_endpoint,
        redis_port=redis.port,
        tags=tags,
    ),
)

pulumi.export("project", settings.project)
pulumi.export("stack", settings.stack)
pulumi.export("region", settings.region)
pulumi.export("release", settings.app.release)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("redisPrimaryEndpoint", redis.primary_endpoint)
pulumi.export("redisReaderEndpoint", redis.reader_endpoint)
pulumi.export("redisPort", redis.port)
pulumi.export("authTokenParameter", redis.auth_token_parameter_name)
pulumi.export("djangoSecretKeyParameter", secrets.django_secret_key_parameter_name)
pulumi.export("webSecurityGroupId", security.web_security_group_id)
pulumi.export("workerSecurityGroupId", security.worker_security_group_id)
pulumi.export("redisSecurityGroupId", security.redis_security_group_id)
pulumi.export("webInstanceIds", fleet.web_instance_ids)
pulumi.export("workerInstanceIds", fleet.worker_instance_ids)
pulumi.export("beatInstanceId", fleet.beat_instance_id)
