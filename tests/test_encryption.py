"""The stack key: rotation on, and a policy (parsed as JSON) under which only the stack's
instance role decrypts the stack's SecureStrings, through SSM; the key encrypts them, Redis at
rest, the log groups and the root volumes."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest

from components.encryption import KeyPolicyInputs, StackKey, StackKeyArgs, key_policy
from offline_render.fake_aws import ACCOUNT
from offline_render.program import StackRender
from tests.conftest import KEY_ADMINISTRATOR_ARN, TUNED_OPERATIONS, of_type, only

KEY = "aws:kms/key:Key"
PARAMETER = "aws:ssm/parameter:Parameter"
INSTANCE_ROLES = [f"arn:aws:iam::{ACCOUNT}:role/prod-{kind}-role" for kind in ("web", "worker", "worker-beat")]
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
CONFIGURED_KEY = "arn:aws:kms:eu-west-1:210987654321:key/0123abcd-0123-4567-89ab-0123456789ab"

AUTOSCALING_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
)


def key_statements(render: StackRender) -> list[dict[str, Any]]:
    return list(json.loads(only(render, KEY)["policy"])["Statement"])


def allows(statement: dict[str, Any], action: str) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return statement["Effect"] == "Allow" and any(fnmatchcase(action, pattern) for pattern in actions)


def test_the_stack_key_rotates_and_outlives_a_mistaken_deletion(prod: StackRender) -> None:
    key = only(prod, KEY)
    assert key["enableKeyRotation"] is True
    assert key["deletionWindowInDays"] == 30
    assert only(prod, "aws:kms/alias:Alias")["name"] == "alias/django-stack/prod"


def test_every_secure_string_is_encrypted_with_the_stack_key(prod: StackRender) -> None:
    parameters = [p.inputs for p in prod.of_type(PARAMETER) if p.inputs["type"] == "SecureString"]
    assert len(parameters) == 3  # the Redis token, its next value, the Django key
    key_arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/"
    assert all(p["keyId"].startswith(key_arn) for p in parameters)


def test_only_the_instance_roles_decrypt_besides_services_for_their_own_resources(prod: StackRender) -> None:
    decrypting = {s["Sid"]: s for s in key_statements(prod) if allows(s, "kms:Decrypt")}
    assert set(decrypting) == {
        "InstanceRolesReadStackSecrets",
        "DeployerUsesKeyThroughServices",
        "CloudWatchLogsEncryptsStackLogGroups",
        "AutoScalingUsesKeyForRootVolumes",
        "CloudWatchAlarmsPublishToStackTopic",
    }
    reader = decrypting["InstanceRolesReadStackSecrets"]
    assert reader["Principal"] == {"AWS": INSTANCE_ROLES}  # each kind's role, no other
    assert reader["Condition"]["StringEquals"] == {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}
    assert reader["Condition"]["ArnLike"] == {
        "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/django-stack/prod/*"
    }
    deployer = decrypting["DeployerUsesKeyThroughServices"]["Condition"]["StringEquals"]
    assert deployer["kms:ViaService"] == [f"{s}.eu-west-1.amazonaws.com" for s in ("ssm", "elasticache", "ec2")]
    # Auto Scaling launches the instances, so its service-linked role encrypts their volumes.
    launcher = decrypting["AutoScalingUsesKeyForRootVolumes"]
    assert launcher["Principal"] == {"AWS": AUTOSCALING_ROLE}
    assert launcher["Condition"] == {"StringEquals": {"kms:ViaService": "ec2.eu-west-1.amazonaws.com"}}
    logs = decrypting["CloudWatchLogsEncryptsStackLogGroups"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    # The groups the program names after the stack (Redis, flow logs) and the instances' groups.
    assert logs["Condition"]["ArnLike"] == {
        "kms:EncryptionContext:aws:logs:arn": [
            f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:prod-*",
            f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/django-stack/prod/*",
        ]
    }
    # CloudWatch, for this account's alarms, publishing to the stack's alarm topic only.
    alarms = decrypting["CloudWatchAlarmsPublishToStackTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alarms["Condition"] == {
        "StringEquals": {
            "kms:EncryptionContext:aws:sns:topicArn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:prod-alerts",
            "aws:SourceAccount": ACCOUNT,
        },
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:*"},
    }


def test_grants_are_only_for_aws_resources(prod: StackRender) -> None:
    granting = [s for s in key_statements(prod) if allows(s, "kms:CreateGrant")]
    assert [s["Sid"] for s in granting] == ["ServicesHoldGrantsForTheirResources", "AutoScalingGrantsEc2ForRootVolumes"]
    assert all(s["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"} for s in granting)


def test_redis_its_slow_log_and_the_root_volumes_use_the_stack_key(prod: StackRender) -> None:
    key_arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/"
    group = only(prod, "aws:elasticache/replicationGroup:ReplicationGroup")
    assert group["atRestEncryptionEnabled"] is True and group["kmsKeyId"].startswith(key_arn)
    for log_group in prod.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert log_group.inputs["kmsKeyId"].startswith(key_arn), log_group.name
    templates = prod.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates
    for template in templates:
        (root,) = template.inputs["blockDeviceMappings"]
        assert root["ebs"]["encrypted"] == "true" and root["ebs"]["kmsKeyId"].startswith(key_arn), template.name


def test_auto_scaling_may_use_the_key_through_ec2_only_when_it_launches_the_instances() -> None:
    inputs = KeyPolicyInputs("eu-west-1", ACCOUNT, ROOT, INSTANCE_ROLES, "/django-stack/prod/", ("prod-",), True)
    statements = {s["Sid"]: s for s in key_policy(inputs)["Statement"]}
    service_role = AUTOSCALING_ROLE
    for sid in ("AutoScalingUsesKeyForRootVolumes", "AutoScalingGrantsEc2ForRootVolumes"):
        assert statements[sid]["Principal"] == {"AWS": service_role}
        assert statements[sid]["Condition"]["StringEquals"] == {"kms:ViaService": "ec2.eu-west-1.amazonaws.com"}
    without = key_policy(
        KeyPolicyInputs("eu-west-1", ACCOUNT, ROOT, INSTANCE_ROLES, "/django-stack/prod/", ("prod-",), False)
    )
    assert not any("AutoScaling" in s["Sid"] for s in without["Statement"])


def test_the_administrator_manages_the_key_without_using_it(prod: StackRender, render) -> None:
    (admin,) = [s for s in key_statements(prod) if s["Sid"] == "AdministerKey"]
    assert admin["Principal"] == {"AWS": ROOT}
    for use in ("kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey"):
        assert not allows(admin, use), use
    assert allows(admin, "kms:PutKeyPolicy") and allows(admin, "kms:ScheduleKeyDeletion")
    assert not allows(admin, "kms:CreateGrant")
    named_admin = render(TUNED_OPERATIONS)
    principals = {s["Sid"]: s["Principal"] for s in key_statements(named_admin)}
    assert principals["AdministerKey"] == principals["DeployerUsesKeyThroughServices"] == {"AWS": KEY_ADMINISTRATOR_ARN}


def test_a_configured_key_replaces_the_stack_key(render) -> None:
    configured = render({"security.kmsKeyArn": CONFIGURED_KEY})
    assert configured.of_type(KEY) == []
    secure = [p.inputs for p in configured.of_type(PARAMETER) if p.inputs["type"] == "SecureString"]
    assert len(secure) == 3 and {p["keyId"] for p in secure} == {CONFIGURED_KEY}
    assert only(configured, "aws:elasticache/replicationGroup:ReplicationGroup")["kmsKeyId"] == CONFIGURED_KEY
    templates = configured.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert {t.inputs["blockDeviceMappings"][0]["ebs"]["kmsKeyId"] for t in templates} == {CONFIGURED_KEY}


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("alias/aws/ssm", "expected a KMS key ARN"),
        ("arn:aws:kms:eu-west-1:123456789012:alias/django", "expected a KMS key ARN"),
        ("arn:aws:kms:us-east-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab", "stack's region (eu-west-1)"),
    ],
)
def test_a_key_arn_that_is_not_a_key_of_the_region_is_refused_before_any_resource(render, value, complaint) -> None:
    with pytest.raises(Exception, match="invalid stack config") as raised:
        render({"security.kmsKeyArn": value})
    lines = [line for line in str(raised.value).splitlines() if "security.kmsKeyArn" in line]
    assert len(lines) == 1 and complaint in lines[0]


def test_stack_key_alone_names_the_roles_it_is_given(build_alone) -> None:
    args = StackKeyArgs(
        description="t",
        alias_name="alias/p/t",
        region="eu-west-1",
        account_id=ACCOUNT,
        administrator_arn=ROOT,
        instance_role_arns=[f"arn:aws:iam::{ACCOUNT}:role/t-web-role", f"arn:aws:iam::{ACCOUNT}:role/t-worker-role"],
        parameter_path="/p/t/",
        log_group_prefixes=("t-",),
        autoscaling=True,
        protect=False,
        tags={"Stack": "t"},
    )
    resources = build_alone(lambda: StackKey("t", args))
    (key,) = of_type(resources, KEY)
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    assert statements["InstanceRolesReadStackSecrets"]["Principal"] == {
        "AWS": [f"arn:aws:iam::{ACCOUNT}:role/t-web-role", f"arn:aws:iam::{ACCOUNT}:role/t-worker-role"]
    }
    assert "AutoScalingUsesKeyForRootVolumes" in statements
    (alias,) = of_type(resources, "aws:kms/alias:Alias")
    assert alias.inputs["name"] == "alias/p/t"
