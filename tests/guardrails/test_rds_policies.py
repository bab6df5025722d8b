"""The policy pack on a stack that creates its database (database.mode rds): the stack passes every
policy, protected or not, and each RDS rule catches the instance (or parameter group) that breaks it."""

from __future__ import annotations

from typing import Any

import pytest

from ops.stack import program_project
from policy import rules
from policy.offline import violations
from tests.test_rds import PROD_RDS, RDS, STAGING_RDS, with_rds

PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"


@pytest.mark.parametrize(("database", "stack"), [(PROD_RDS, "prod"), (STAGING_RDS, "staging")])
def test_a_stack_with_its_own_database_passes_every_policy(database: dict[str, Any], stack: str) -> None:
    assert violations(with_rds(database, stack=stack)) == []


def judged(resource_type: str, props: dict[str, Any], protected: bool = True) -> list[str]:
    stack = rules.StackId(program_project(), "prod")
    found = [message for policy in rules.RESOURCE_POLICIES for message in policy.check(resource_type, props, stack)]
    return found + [
        message for policy in rules.PROTECTION_POLICIES for message in policy.check(resource_type, props, protected)
    ]


def instance() -> dict[str, Any]:
    (found,) = [r.inputs for r in with_rds().resources if r.type_ == RDS]
    return dict(found)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"publiclyAccessible": True}, "publiclyAccessible must be false: the database gets no public address"),
        (
            {"dbSubnetGroupName": None},
            "dbSubnetGroupName is not set: RDS would use the default VPC's subnets; name private ones",
        ),
        ({"storageEncrypted": False}, "storageEncrypted must be true (storage, backups and snapshots encrypted)"),
        ({"kmsKeyId": None}, "kmsKeyId is not set: encrypt the database with the stack's key, not aws/rds"),
        (
            {"manageMasterUserPassword": None, "password": "hunter2hunter2"},
            "a master password input: use manageMasterUserPassword (RDS keeps it in Secrets Manager)",
        ),
        (
            {"masterUserSecretKmsKeyId": "alias/aws/secretsmanager"},
            "masterUserSecretKmsKeyId is not set: keep the password's secret under the stack's key",
        ),
        ({"parameterGroupName": None}, "parameterGroupName is not set: name a parameter group with rds.force_ssl=1"),
        ({"deletionProtection": False}, "deletionProtection must be true on a protected database"),
        (
            {"skipFinalSnapshot": True},
            "a protected database keeps a final snapshot: skipFinalSnapshot false, finalSnapshotIdentifier",
        ),
    ],
)
def test_each_rds_rule_catches_the_instance_that_breaks_it(change: dict[str, Any], message: str) -> None:
    assert judged(RDS, instance()) == []
    broken = {key: value for key, value in {**instance(), **change}.items() if value is not None}
    assert judged(RDS, broken) == [message]


def test_an_unprotected_database_may_be_deleted() -> None:
    assert judged(RDS, {**instance(), "deletionProtection": False}, protected=False) == []


def test_a_postgres_parameter_group_without_forced_tls_violates() -> None:
    (group,) = [r.inputs for r in with_rds().resources if r.type_ == PARAMETER_GROUP]
    assert judged(PARAMETER_GROUP, group) == []
    for parameters in ([], [{"name": "rds.force_ssl", "value": "0"}]):
        assert judged(PARAMETER_GROUP, {**group, "parameters": parameters}) == [
            "rds.force_ssl is not 1: the server would accept plain-text connections"
        ]
