"""The broker as the program asks ElastiCache for it (inputs recorded by the mocks)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.redis import Redis, RedisArgs
from offline_render.fake_aws import mock_id
from tests.conftest import SMALL, diffed, is_secret, named, of_type, only, rendered

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
PARAMETER_GROUP = "aws:elasticache/parameterGroup:ParameterGroup"
# prod with the broker's keys these tests read moved off their defaults, rendered once for all of
# them (a render is ~0.2 s of the unit lane's CPU); each test checks only its own keys' effect.
TUNED = {
    "redis.nodeType": "cache.r7g.large",
    "redis.snapshotRetentionDays": 1,
    "redis.slowLogRetentionDays": 30,
    "redis.authTokenVersion": 2,
    "redis.authTokenUpdateStrategy": "SET",
}


def test_encrypted_in_transit_and_at_rest(prod):
    group = only(prod, GROUP)
    assert group["transitEncryptionEnabled"] is True
    assert group["transitEncryptionMode"] == "required"
    assert group["atRestEncryptionEnabled"] is True


def test_auth_token_is_sent_write_only_and_stays_secret(prod):
    group = only(prod, GROUP)
    assert "authToken" not in group and is_secret(group["authTokenWo"])
    assert group["authTokenWoVersion"] == 1
    parameter = named(prod, "aws:ssm/parameter:Parameter", "prod-redis-auth-token")
    assert parameter["type"] == "SecureString"
    assert parameter["name"] == "/django-stack/prod/redis/auth-token"
    assert "value" not in parameter and is_secret(parameter["valueWo"]) and parameter["valueWoVersion"] == 1


def test_rotating_the_token_is_a_config_change(render):
    rotated = render(TUNED)
    assert only(rotated, GROUP)["authTokenWoVersion"] == 2
    assert only(rotated, GROUP)["authTokenUpdateStrategy"] == "SET"


def test_prod_has_a_replica_with_failover_and_multi_az(prod):
    group = only(prod, GROUP)
    assert group["numCacheClusters"] == 2
    assert group["automaticFailoverEnabled"] is True
    assert group["multiAzEnabled"] is True


def test_single_node_has_no_failover(render):
    single = only(render(SMALL), GROUP)
    assert single["numCacheClusters"] == 1
    assert single["automaticFailoverEnabled"] is False
    assert single["multiAzEnabled"] is False


def test_engine_windows_and_snapshots_come_from_config(prod, render):
    group = only(prod, GROUP)
    assert (group["engine"], group["engineVersion"], group["nodeType"]) == ("redis", "7.1", "cache.t4g.small")
    assert group["snapshotRetentionLimit"] == 7
    assert group["snapshotWindow"] == "03:00-04:00"
    assert group["maintenanceWindow"] == "sun:05:00-sun:06:00"
    changed = only(render(TUNED), GROUP)
    assert (changed["nodeType"], changed["snapshotRetentionLimit"]) == ("cache.r7g.large", 1)


def test_parameter_group_never_evicts_broker_data(prod):
    params = only(prod, "aws:elasticache/parameterGroup:ParameterGroup")
    assert params["family"] == "redis7"
    assert params["parameters"] == [{"name": "maxmemory-policy", "value": "noeviction"}]
    assert only(prod, GROUP)["parameterGroupName"] == "prod-redis-params"


def test_valkey_changes_only_the_engine_its_version_and_the_family(prod, render):
    # TLS, at-rest encryption, the token, failover, windows, names: all as with Redis.
    valkey = render({"redis.engine": "valkey", "redis.engineVersion": "8.1"})
    group, valkey_group = only(prod, GROUP), only(valkey, GROUP)
    assert valkey_group["transitEncryptionMode"] == "required" and is_secret(valkey_group["authTokenWo"])
    group, valkey_group = diffed(group), diffed(valkey_group)
    changed = {key for key in group.keys() | valkey_group.keys() if group.get(key) != valkey_group.get(key)}
    assert changed == {"engine", "engineVersion"}
    params, valkey_params = only(prod, PARAMETER_GROUP), only(valkey, PARAMETER_GROUP)
    assert {key for key in params if params[key] != valkey_params[key]} == {"family"}
    assert valkey_params["family"] == "valkey8"
    assert sorted((r.type_, r.name) for r in valkey.resources) == sorted((r.type_, r.name) for r in prod.resources)


def test_a_redis_stack_is_unchanged_by_the_engine_key(prod, render):
    # Stacks made before `redis.engine` existed have no such key: the default must give every
    # resource the very same inputs, or their next `up` would modify (or replace) the broker.
    explicit = render({"redis.engine": "redis"})
    inputs = {(r.type_, r.name): diffed(r.inputs) for r in prod.resources}
    assert {(r.type_, r.name): diffed(r.inputs) for r in explicit.resources} == inputs
    assert len(inputs) == len(prod.resources)
    assert (only(prod, GROUP)["engine"], only(prod, PARAMETER_GROUP)["family"]) == ("redis", "redis7")


@pytest.mark.parametrize(("version", "family"), [("7.2", "valkey7"), ("8.0", "valkey8"), ("8.1", "valkey8")])
def test_redis_alone_takes_the_engine_from_its_args_and_the_family_from_its_major_version(build_alone, version, family):
    resources = build_alone(lambda: Redis("t", redis_args(engine="valkey", engine_version=version)))
    (group,) = of_type(resources, GROUP)
    (params,) = of_type(resources, PARAMETER_GROUP)
    assert (group.inputs["engine"], group.inputs["engineVersion"], params.inputs["family"]) == (
        "valkey",
        version,
        family,
    )
    assert params.inputs["parameters"] == [{"name": "maxmemory-policy", "value": "noeviction"}]


def test_only_private_subnets_and_the_redis_security_group(prod):
    subnet_group = only(prod, "aws:elasticache/subnetGroup:SubnetGroup")
    tiers = {mock_id("subnet", r.name): r.inputs["tags"]["Tier"] for r in prod.of_type("aws:ec2/subnet:Subnet")}
    assert sorted(tiers.values()) == ["private", "private", "public", "public"]
    assert sorted(tiers[s] for s in subnet_group["subnetIds"]) == ["private", "private"]
    assert only(prod, GROUP)["securityGroupIds"] == [mock_id("sg", "prod-redis")]


def test_slow_log_and_engine_log_go_to_their_own_groups_with_the_same_retention_and_key(render):
    rendered = render(TUNED)
    assert only(rendered, GROUP)["logDeliveryConfigurations"] == [
        {
            "destination": "prod-redis-slow-log",
            "destinationType": "cloudwatch-logs",
            "logFormat": "json",
            "logType": "slow-log",
        },
        {
            "destination": "prod-redis-engine-log",
            "destinationType": "cloudwatch-logs",
            "logFormat": "json",
            "logType": "engine-log",
        },
    ]
    key = only(rendered, GROUP)["kmsKeyId"]
    for log in ("prod-redis-slow-log", "prod-redis-engine-log"):
        group = named(rendered, "aws:cloudwatch/logGroup:LogGroup", log)
        assert (group["retentionInDays"], group["kmsKeyId"]) == (30, key), log


def test_prod_protects_the_group_and_the_stack_key_and_staging_does_not(prod):
    protected = {(r.type_, r.name) for r in prod.resources if r.protected}
    assert protected == {(GROUP, "prod-redis-group"), ("aws:kms/key:Key", "prod-key")}
    assert not [r.name for r in rendered("staging").resources if r.protected]


def test_deleting_the_group_leaves_a_final_snapshot(prod):
    assert only(prod, GROUP)["finalSnapshotIdentifier"] == "prod-redis-final"


def test_the_token_is_stored_only_once_the_replication_group_has_taken_it(monkeypatch, build_alone):
    # The mocks resolve everything at once, so the order is read from the resource options.
    options: dict[str, pulumi.ResourceOptions] = {}

    class RecordingParameter(aws.ssm.Parameter):
        def __init__(self, resource_name: str, *args: Any, opts: pulumi.ResourceOptions | None = None, **kwargs: Any):
            options[resource_name] = opts
            super().__init__(resource_name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(aws.ssm, "Parameter", RecordingParameter)
    build_alone(lambda: Redis("t", redis_args()))  # a fresh run, so the recording class sees it
    stored = options["t-redis-auth-token"]
    assert [type(d).__name__ for d in stored.depends_on] == ["ReplicationGroup"]
    assert isinstance(stored.parent, Redis)
    # Moved from the Secrets component: an alias keeps it the same resource (no delete + create).
    assert len(stored.aliases) == 1


def redis_args(**changes: object) -> RedisArgs:
    values: dict[str, object] = {
        "description": "broker",
        "engine": "redis",
        "engine_version": "7.1",
        "node_type": "cache.t4g.small",
        "replicas": 1,
        "multi_az": True,
        "snapshot_retention_days": 7,
        "snapshot_window": "03:00-04:00",
        "maintenance_window": "sun:05:00-sun:06:00",
        "apply_immediately": False,
        "log_retention_days": 14,
        "auth_token_update_strategy": "ROTATE",
        "subnet_ids": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
        "security_group_id": "sg-0123456789abcdef0",
        "auth_token": "plain-token-for-the-test-0123456789",
        "auth_token_version": 1,
        "auth_token_parameter": "/p/t/redis/auth-token",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab",
        "protect": False,
        "tags": {"Stack": "t"},
    }
    return RedisArgs(**(values | changes))  # type: ignore[arg-type]


def test_redis_alone_from_plain_values(build_alone):
    resources = build_alone(lambda: Redis("t", redis_args(replicas=0, multi_az=False)))
    (group,) = of_type(resources, GROUP)
    assert group.inputs["numCacheClusters"] == 1 and group.inputs["automaticFailoverEnabled"] is False
    assert group.inputs["securityGroupIds"] == ["sg-0123456789abcdef0"]
    assert group.inputs["authTokenWo"]["value"] == "plain-token-for-the-test-0123456789"  # kept secret
    (subnets,) = of_type(resources, "aws:elasticache/subnetGroup:SubnetGroup")
    assert subnets.inputs["subnetIds"] == ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
    (parameter,) = of_type(resources, "aws:ssm/parameter:Parameter")
    assert (parameter.inputs["name"], parameter.inputs["type"]) == ("/p/t/redis/auth-token", "SecureString")


def test_renamed_redis_resources_carry_their_old_names_as_aliases(build_alone):
    # An alias makes `pulumi up` on an existing stack adopt the old resource instead of
    # replacing it (a replaced replication group loses every queued task).
    aliases: dict[str, list[str | None]] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        aliases[args.name] = [alias.name for alias in args.opts.aliases or [] if isinstance(alias, pulumi.Alias)]

    build_alone(lambda: Redis("t", redis_args(), pulumi.ResourceOptions(transformations=[record])))
    assert {name: found for name, found in aliases.items() if found} == {
        "t-redis-subnets": ["t-subnets"],
        "t-redis-params": ["t-params"],
        "t-redis-slow-log": ["t-slow-log"],
        "t-redis-group": ["t-group"],
        "t-redis-auth-token": [...],  # same name, moved from the Secrets component (a parent alias)
    }
