"""The stack key: rotation on, and a policy (parsed as JSON) under which only the stack's
instance role decrypts the stack's SecureStrings, through SSM; the key encrypts them."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest

from offline_render.fake_aws import ACCOUNT
from offline_render.program import StackRender
from tests.conftest import only

KEY = "aws:kms/key:Key"
PARAMETER = "aws:ssm/parameter:Parameter"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/prod-role"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
CONFIGURED_KEY = "arn:aws:kms:eu-west-1:210987654321:key/0123abcd-0123-4567-89ab-0123456789ab"


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
    assert len(parameters) == 2
    key_arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/"
    assert all(p["keyId"].startswith(key_arn) for p in parameters)


def test_only_the_instance_role_decrypts_outside_the_deployers_ssm_writes(prod: StackRender) -> None:
    decrypting = {s["Sid"]: s for s in key_statements(prod) if allows(s, "kms:Decrypt")}
    assert set(decrypting) == {"InstanceRoleReadsStackSecrets", "DeployerWritesStackSecrets"}
    reader = decrypting["InstanceRoleReadsStackSecrets"]
    assert reader["Principal"] == {"AWS": INSTANCE_ROLE}
    assert reader["Condition"]["StringEquals"] == {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}
    assert reader["Condition"]["ArnLike"] == {
        "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/django-stack/prod/*"
    }
    deployer = decrypting["DeployerWritesStackSecrets"]
    assert deployer["Condition"]["StringEquals"]["kms:ViaService"] == "ssm.eu-west-1.amazonaws.com"


def test_the_administrator_manages_the_key_without_using_it(prod: StackRender, render) -> None:
    (admin,) = [s for s in key_statements(prod) if s["Sid"] == "AdministerKey"]
    assert admin["Principal"] == {"AWS": ROOT}
    for use in ("kms:Decrypt", "kms:Encrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey"):
        assert not allows(admin, use), use
    assert allows(admin, "kms:PutKeyPolicy") and allows(admin, "kms:ScheduleKeyDeletion")
    deploy_role = f"arn:aws:iam::{ACCOUNT}:role/django-stack-deploy"
    named_admin = render({"security.keyAdministratorArn": deploy_role})
    principals = {s["Sid"]: s["Principal"] for s in key_statements(named_admin)}
    assert principals["AdministerKey"] == principals["DeployerWritesStackSecrets"] == {"AWS": deploy_role}


def test_a_configured_key_replaces_the_stack_key(render) -> None:
    configured = render({"security.kmsKeyArn": CONFIGURED_KEY})
    assert configured.of_type(KEY) == []
    assert {p.inputs["keyId"] for p in configured.of_type(PARAMETER)} == {CONFIGURED_KEY}


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
