"""`database.mode: rds`: the stack's own PostgreSQL (components/database.py). Private, TLS forced,
encrypted with the stack key, its password made by RDS and readable by exactly the instance roles,
watched by the stack's alarms; bad config is one line naming the key, before any resource; an
existing stack that adds it keeps every resource it had. Asserted on the resources' actual inputs,
policies parsed as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offline_render.fake_aws import mock_id
from offline_render.program import StackRender
from settings import ConfigError, load_settings
from tests.conftest import diffed, named, only, prod_config_values, rendered

RDS = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
# prod is protected: a standby and a week of backups are what it must have.
PROD_RDS = {"mode": "rds", "multiAz": True}


def with_rds(database: dict[str, Any] | None = None, stack: str = "prod") -> StackRender:
    return rendered(stack, {"database": database or PROD_RDS})


def secret_arn(render: StackRender) -> str:
    (instance,) = [r for r in render.resources if r.type_ == RDS]
    # What the mocks answer for the instance's master_user_secrets (AWS's rds!db-<id> name).
    from offline_render.fake_aws import mock_uuid

    return f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-{mock_uuid(instance.name)}-AbCdEf"


def test_the_instance_is_private_encrypted_and_its_password_made_by_rds() -> None:
    render = with_rds()
    instance = only(render, RDS)
    key = render.outputs["kmsKeyArn"]
    assert instance["engine"] == "postgres"
    assert instance["engineVersion"] == "17"
    assert instance["publiclyAccessible"] is False
    assert instance["storageEncrypted"] is True and instance["kmsKeyId"] == key
    assert instance["manageMasterUserPassword"] is True and instance["masterUserSecretKmsKeyId"] == key
    assert "password" not in instance and "passwordWo" not in instance
    assert instance["performanceInsightsEnabled"] is True
    assert instance["performanceInsightsRetentionPeriod"] == 7 and instance["performanceInsightsKmsKeyId"] == key
    assert instance["enabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert instance["multiAz"] is True and instance["backupRetentionPeriod"] == 7
    assert instance["vpcSecurityGroupIds"] == [mock_id("sg", "prod-database")]
    # The mocks auto-name as AWS does: a resource's name is its Pulumi name.
    assert instance["dbSubnetGroupName"] == "prod-database-subnets"
    private = [r for r in render.of_type("aws:ec2/subnet:Subnet") if "private" in r.name]
    assert len(private) == 2 and all(not subnet.inputs.get("mapPublicIpOnLaunch") for subnet in private)
    subnets = named(render, "aws:rds/subnetGroup:SubnetGroup", "prod-database-subnets")
    # (The mocks record resources in the order the engine registers them, which varies.)
    assert sorted(subnets["subnetIds"]) == sorted(mock_id("subnet", subnet.name) for subnet in private)


def test_tls_is_forced_by_its_own_parameter_group_whose_family_follows_the_version() -> None:
    for version, family in (("16", "postgres16"), ("17.4", "postgres17")):
        render = with_rds({**PROD_RDS, "engineVersion": version})
        group = only(render, "aws:rds/parameterGroup:ParameterGroup")
        assert group["family"] == family
        assert {"name": "rds.force_ssl", "value": "1"} in group["parameters"]
        assert only(render, RDS)["parameterGroupName"] == "prod-database-params"
        assert only(render, RDS)["engineVersion"] == version


def test_protect_turns_on_deletion_protection_and_a_final_snapshot_is_always_taken() -> None:
    protected = [r for r in with_rds().resources if r.type_ == RDS]
    assert protected[0].protected and protected[0].inputs["deletionProtection"] is True
    staging = [r for r in with_rds({"mode": "rds"}, stack="staging").resources if r.type_ == RDS]
    assert not staging[0].protected and staging[0].inputs["deletionProtection"] is False
    for instance in (protected[0].inputs, staging[0].inputs):
        assert instance["skipFinalSnapshot"] is False
        assert instance["finalSnapshotIdentifier"] == f"{instance['identifier']}-final"


def test_its_group_admits_5432_from_web_and_worker_only_and_they_reach_only_it() -> None:
    render, before = with_rds(), rendered("prod")
    database = mock_id("sg", "prod-database")
    ingress = sorted(
        (r["ipProtocol"], r["fromPort"], r["toPort"], r.get("cidrIpv4") or r["referencedSecurityGroupId"])
        for r in (x.inputs for x in render.of_type(INGRESS))
        if r["securityGroupId"] == database
    )
    assert ingress == [
        ("tcp", 5432, 5432, mock_id("sg", "prod-web")),
        ("tcp", 5432, 5432, mock_id("sg", "prod-worker")),
    ]
    assert not [r for r in render.of_type(EGRESS) if r.inputs["securityGroupId"] == database]
    new_egress = {r.name: r.inputs for r in render.of_type(EGRESS)}.keys() - {r.name for r in before.of_type(EGRESS)}
    assert sorted(new_egress) == ["prod-web-to-database", "prod-worker-to-database"]
    for role in ("web", "worker"):
        rule = named(render, EGRESS, f"prod-{role}-to-database")
        assert (rule["securityGroupId"], rule["referencedSecurityGroupId"], rule["fromPort"], rule["toPort"]) == (
            mock_id("sg", f"prod-{role}"),
            database,
            5432,
            5432,
        )


def test_each_instance_role_reads_exactly_the_database_secret() -> None:
    render = with_rds()
    grants = {r.name: json.loads(r.inputs["policy"]) for r in render.of_type(ROLE_POLICY) if "database" in r.name}
    assert sorted(grants) == [f"prod-{kind}-read-database-secret" for kind in ("web", "worker-beat", "worker")]
    for name, document in grants.items():
        assert document["Statement"] == [
            {
                "Sid": "ReadDatabaseSecret",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret_arn(render),
            }
        ], name
        role = named(render, ROLE_POLICY, name)["role"]
        assert role == f"{name.removesuffix('-read-database-secret')}-role"
    # Nothing else reads Secrets Manager.
    others = json.dumps([r.inputs for r in render.of_type(ROLE_POLICY) if "database" not in r.name])
    assert "secretsmanager" not in others


def test_the_stack_key_lets_the_roles_decrypt_only_rds_secrets_through_secrets_manager() -> None:
    render = with_rds()
    policy = json.loads(only(render, "aws:kms/key:Key")["policy"])
    by_sid = {statement["Sid"]: statement for statement in policy["Statement"]}
    read = by_sid["InstanceRolesReadDatabaseSecret"]
    assert read["Action"] == "kms:Decrypt"
    assert read["Condition"] == {
        "StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"},
        "ArnLike": {"kms:EncryptionContext:SecretARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-*"},
    }
    assert by_sid["RdsHoldsGrantsForItsResources"]["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    logs = by_sid["CloudWatchLogsEncryptsStackLogGroups"]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/rds/instance/prod-postgres/*" in logs
    # Its exported logs go to groups the stack made, with its retention and key.
    for log in ("postgresql", "upgrade"):
        group = named(render, "aws:cloudwatch/logGroup:LogGroup", f"prod-database-{log}-log")
        assert group["name"] == f"/aws/rds/instance/prod-postgres/{log}"
        assert group["kmsKeyId"] == render.outputs["kmsKeyArn"]


def test_cpu_storage_and_connection_alarms_and_the_dashboard_watch_it() -> None:
    render = with_rds()
    alarms = {r.inputs["name"]: r.inputs for r in render.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    watched = {
        name: (a["namespace"], a["metricName"], a["dimensions"], a["comparisonOperator"], a["threshold"])
        for name, a in alarms.items()
        if name.startswith("prod-database-")
    }
    identifier = {"DBInstanceIdentifier": "prod-postgres"}
    assert watched == {
        "prod-database-cpu": ("AWS/RDS", "CPUUtilization", identifier, "GreaterThanThreshold", 80),
        "prod-database-free-storage": ("AWS/RDS", "FreeStorageSpace", identifier, "LessThanThreshold", 2 * 1024**3),
        "prod-database-connections": ("AWS/RDS", "DatabaseConnections", identifier, "GreaterThanThreshold", 150),
    }
    topic = render.outputs["alarmTopicArn"]
    assert all(alarms[name]["alarmActions"] == [topic] for name in watched)
    body = json.loads(only(render, "aws:cloudwatch/dashboard:Dashboard")["dashboardBody"])
    lines = [line for widget in body["widgets"] for line in widget["properties"]["metrics"]]
    assert ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", "prod-postgres"] in [line[:4] for line in lines]


def test_adding_the_database_replaces_nothing_the_stack_had() -> None:
    """Every resource of the stack without it stays, same name and type; the only inputs that
    change are the key's policy and the dashboard's body, both updated in place."""
    before = {(r.type_, r.name): diffed(r.inputs) for r in rendered("prod").resources}
    after = {(r.type_, r.name): diffed(r.inputs) for r in with_rds().resources}
    assert before.keys() <= after.keys()
    changed = sorted(name for key, name in before if before[(key, name)] != after[(key, name)])
    assert changed == ["prod-dashboard", "prod-key"]
    assert {type_ for type_, _ in after.keys() - before.keys()} == {
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:cloudwatch/logGroup:LogGroup",
        RDS,
        ROLE_POLICY,
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "djangostack:database:Database",
    }


# --- bad input: one line naming the key, before any resource ---------------------------------------


def errors_for(database: dict[str, Any], *, protect: bool = True, secrets: dict[str, str] | None = None) -> list[str]:
    values = prod_config_values()
    values["database"] = json.dumps(database)
    security = json.loads(values["security"])
    values["security"] = json.dumps({**security, "protect": protect})
    if secrets is not None:
        values["app"] = json.dumps({**json.loads(values["app"]), "secretParameters": secrets})
    with pytest.raises(ConfigError) as raised:
        load_settings(values, stack="prod", region="eu-west-1")
    return str(raised.value).splitlines()


@pytest.mark.parametrize(
    ("database", "protect", "line"),
    [
        (
            {"mode": "rds", "multiAz": True, "engineVersion": "15"},
            True,
            'database.engineVersion: got \'15\'; allowed majors: 16, 17 (e.g. "17" or "17.4")',
        ),
        (
            {"mode": "rds", "multiAz": True, "engineVersion": "seventeen"},
            True,
            'database.engineVersion: got \'seventeen\'; use a PostgreSQL major, e.g. "17" (or "17.4")',
        ),
        (
            {"mode": "rds", "multiAz": True, "instanceClass": "db.x2g.large"},
            True,
            "database.instanceClass: got 'db.x2g.large'; the 'x2g' family does not run RDS for PostgreSQL here; "
            "allowed families: m5, m5d, m6g, m6gd, m6i, m6id, m7g, m7i, m8g, r5, r5b, r5d, r6g, r6gd, r6i, r6id, "
            "r7g, r7i, r8g, t3, t4g",
        ),
        (
            {"mode": "rds", "multiAz": True, "instanceClass": "t4g.small"},
            True,
            "database.instanceClass: got 't4g.small'; use an RDS instance class, e.g. \"db.t4g.small\"",
        ),
        (
            {"mode": "rds", "multiAz": True, "allocatedStorageGb": 10},
            True,
            "database.allocatedStorageGb: got 10; allowed: 20 to 65536 (gp3)",
        ),
        (
            {"mode": "rds", "multiAz": True, "allocatedStorageGb": 100, "maxAllocatedStorageGb": 50},
            True,
            "database.maxAllocatedStorageGb: got 50; storage autoscaling's ceiling is above allocatedStorageGb (100) "
            "and at most 65536; leave it unset for no autoscaling",
        ),
        (
            {"mode": "rds", "multiAz": True, "backupRetentionDays": 36},
            True,
            "database.backupRetentionDays: got 36; allowed: 1 to 35 days",
        ),
        (
            {"mode": "rds"},
            True,
            "database.multiAz: false while security.protect is true; a protected stack's database keeps a standby "
            "in a second zone: set multiAz: true (or security.protect: false for a test stack)",
        ),
        (
            {"mode": "rds", "multiAz": True, "backupRetentionDays": 3},
            True,
            "database.backupRetentionDays: got 3 while security.protect is true; a protected stack keeps at least "
            "7 days of backups",
        ),
        (
            {"mode": "none", "engineVersion": "17"},
            False,
            "database.engineVersion: only with mode 'rds' (a database the stack creates); mode is 'none'",
        ),
        (
            {"mode": "rds", "securityGroupId": "sg-0d8a7b6c5e4f32109"},
            False,
            "database.securityGroupId: only with mode 'existing'; with mode 'rds' the stack makes the database's group",
        ),
    ],
)
def test_bad_rds_config_is_one_line_naming_the_key(database: dict[str, Any], protect: bool, line: str) -> None:
    assert errors_for(database, protect=protect) == [f"django-stack:{line}"]


def test_rds_composes_the_connection_so_a_database_url_secret_is_refused() -> None:
    assert errors_for(PROD_RDS, secrets={"DATABASE_URL": "/myapp/prod/database-url"}) == [
        "django-stack:app.secretParameters.DATABASE_URL: database.mode 'rds' composes the connection at boot from "
        "the database's own secret; remove it"
    ]


def test_a_test_stack_may_have_a_single_zone_database_with_a_day_of_backups() -> None:
    values = prod_config_values()
    values["database"] = json.dumps({"mode": "rds", "backupRetentionDays": 1})
    values["security"] = json.dumps({**json.loads(values["security"]), "protect": False})
    database = load_settings(values, stack="prod", region="eu-west-1").database
    assert (database.rds_multi_az, database.rds_backup_retention_days) == (False, 1)
