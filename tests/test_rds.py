"""`database.mode: rds`: the stack's own PostgreSQL (components/database.py). Private, TLS forced,
encrypted with the stack key, its password made by RDS and readable by exactly the instance roles,
watched by the stack's alarms; bad config is one line naming the key, before any resource; an
existing stack that adds it keeps every resource it had. Asserted on the resources' actual inputs,
policies parsed as JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from config import ConfigError, load_settings
from offline_render.fake_aws import mock_id
from offline_render.program import StackRender
from tests.conftest import diffed, named, only, prod_config_values, rendered
from userdata.layout import (
    APP_ENV,
    CLOUDWATCH_AGENT_CONFIG,
    DATABASE_CA_FILE,
    DATABASE_DIR_NAME,
    DATABASE_PASSFILE,
    DATABASE_PASSWORD_BIN,
    DATABASE_PASSWORD_TIMER,
    DATABASE_PASSWORD_UNIT,
    SECRETS_SOURCE_ENV,
    SECRETS_UNIT,
    SYSTEM_PYTHON,
    UNIT_DIR,
    USER,
)
from userdata.render import USER_DATA_LIMIT, enabled_units, written_files
from userdata.shipped import shipped_script

RDS = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
# prod is protected: a standby and a week of backups are what it must have.
# The digest of AWS's RDS CA bundle the machines pin (a made-up one: nothing is fetched here).
CA_SHA256 = "5" * 64
PROD_RDS = {"mode": "rds", "multiAz": True, "caBundleSha256": CA_SHA256}
STAGING_RDS = {"mode": "rds", "caBundleSha256": CA_SHA256}


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
    # A major that is not the default, through the whole program: the config reaches both.
    render = with_rds({**PROD_RDS, "engineVersion": "16"})
    group = only(render, "aws:rds/parameterGroup:ParameterGroup")
    assert group["family"] == "postgres16"
    assert {"name": "rds.force_ssl", "value": "1"} in group["parameters"]
    assert only(render, RDS)["parameterGroupName"] == "prod-database-params"
    assert only(render, RDS)["engineVersion"] == "16"
    # The family is the major's, a minor given or not (what the program passes the component).
    values = prod_config_values()
    for version, family in (("16", "postgres16"), ("17.4", "postgres17"), (None, "postgres17")):
        values["database"] = json.dumps({**PROD_RDS, **({"engineVersion": version} if version else {})})
        database = load_settings(values, stack="prod", region="eu-west-1").database
        assert (database.rds_engine_version, database.rds_parameter_family) == (version or "17", family), version


def test_protect_turns_on_deletion_protection_and_a_final_snapshot_is_always_taken() -> None:
    protected = [r for r in with_rds().resources if r.type_ == RDS]
    assert protected[0].protected and protected[0].inputs["deletionProtection"] is True
    staging = [r for r in with_rds(STAGING_RDS, stack="staging").resources if r.type_ == RDS]
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
    change are the key's policy, the dashboard's body and the launch templates' user-data (a new
    template version: the groups' instance refresh rolls the machines onto the database)."""
    before = {(r.type_, r.name): diffed(r.inputs) for r in rendered("prod").resources}
    after = {(r.type_, r.name): diffed(r.inputs) for r in with_rds().resources}
    assert before.keys() <= after.keys()
    changed = {key: sorted(k for k in after[key] if after[key].get(k) != before[key].get(k)) for key in before}
    assert {key[1]: keys for key, keys in changed.items() if keys} == {
        "prod-dashboard": ["dashboardBody"],
        "prod-key": ["policy"],
        "prod-web": ["userData"],
        "prod-worker": ["userData"],
        "prod-worker-beat": ["userData"],
    }
    assert {key[0] for key, keys in changed.items() if keys == ["userData"]} == {LAUNCH_TEMPLATE}
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


# --- the machines: a password file kept current, shipped only on rds stacks ------------------------


def machine_files(render: StackRender, role: str) -> dict[str, str]:
    instance = next(i for i in render.instances if i.role == role)
    return {file.path: file.content for file in written_files(instance.user_data)}


def test_each_machine_gets_the_password_writer_its_timer_and_a_url_without_the_password() -> None:
    render = with_rds()
    for instance in render.instances:
        files = {file.path: file.content for file in written_files(instance.user_data)}
        assert files[DATABASE_PASSWORD_BIN] == shipped_script("app-database-password")
        service = files[f"{UNIT_DIR}/{DATABASE_PASSWORD_UNIT}"]
        # The app user writes it (libpq reads only a password file its reader owns, 0600), at
        # boot before app-secrets (which requires it once enabled), and every minute by the timer.
        for line in (
            f"User={USER}",
            f"RuntimeDirectory={DATABASE_DIR_NAME}",
            "RuntimeDirectoryPreserve=yes",
            f"Before={SECRETS_UNIT}",
            f"RequiredBy={SECRETS_UNIT}",
            f"ExecStart={SYSTEM_PYTHON} {DATABASE_PASSWORD_BIN}",
            "SuccessExitStatus=75",
            "OnFailure=app-boot-failed@%N.service",
            "ProtectSystem=strict",
        ):
            assert line in service.splitlines(), (instance.logical_name, line)
        assert "IPAddressDeny" not in service  # it uses the instance role
        timer = files[f"{UNIT_DIR}/{DATABASE_PASSWORD_TIMER}"].splitlines()
        assert "OnUnitActiveSec=1min" in timer and "AccuracySec=1s" in timer
        enabled = enabled_units(instance.user_data)
        assert enabled[:2] == [DATABASE_PASSWORD_UNIT, DATABASE_PASSWORD_TIMER]
        source = dict(
            line.split("=", 1) for line in files[SECRETS_SOURCE_ENV].splitlines() if line.startswith("DATABASE_")
        )
        secret_name = secret_arn(render).split(":secret:")[1].removesuffix("-AbCdEf")
        assert source == {"DATABASE_SECRET": f"'{secret_name}'", "DATABASE_CA_SHA256": CA_SHA256}
        app_env = dict(line.split("=", 1) for line in files[APP_ENV].splitlines())
        assert app_env["DATABASE_URL"] == (
            "'postgres://django@prod-postgres.abcdefghijkl.eu-west-1.rds.amazonaws.com/app"
            f"?sslmode=verify-full&sslrootcert={DATABASE_CA_FILE}&passfile={DATABASE_PASSFILE}'"
        ), instance.logical_name
        assert DATABASE_CA_FILE.rsplit("/", 1)[0] == DATABASE_PASSFILE.rsplit("/", 1)[0] == f"/run/{DATABASE_DIR_NAME}"
        # Its journal ships like every other unit's.
        agent = json.loads(files[CLOUDWATCH_AGENT_CONFIG])["logs"]["logs_collected"]["journald"]["collect_list"]
        assert [DATABASE_PASSWORD_UNIT] in [entry["units"] for entry in agent]


def test_the_stack_sets_database_url_so_app_environment_may_not() -> None:
    with pytest.raises(Exception, match=r"app\.environment\.DATABASE_URL: the stack sets this variable itself"):
        rendered("prod", {"database": PROD_RDS, "app.environment": {"DATABASE_URL": "postgres://x"}})


def test_stacks_without_the_database_ship_none_of_it(prod: StackRender) -> None:
    for instance in prod.instances:
        assert "DATABASE" not in instance.user_data and "app-database" not in instance.user_data


def test_the_user_data_of_prod_with_its_database_fits_ec2s_limit() -> None:
    """What EC2 receives, the launch templates' userData. The database's machine side costs ~670
    bytes gzipped: prod's Beat worker is past what zlib fits in 16 KiB (2026-12-05), and ships
    packed by zopfli."""
    render = with_rds()
    sizes = {
        r.name: len(base64.b64decode(r.inputs["userData"])) for r in render.resources if r.type_ == LAUNCH_TEMPLATE
    }
    assert len(sizes) == 3
    assert max(sizes.values()) <= USER_DATA_LIMIT, sizes


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
            {**PROD_RDS, "engineVersion": "15"},
            True,
            'database.engineVersion: got \'15\'; allowed majors: 16, 17 (e.g. "17" or "17.4")',
        ),
        (
            {**PROD_RDS, "engineVersion": "seventeen"},
            True,
            'database.engineVersion: got \'seventeen\'; use a PostgreSQL major, e.g. "17" (or "17.4")',
        ),
        (
            {**PROD_RDS, "instanceClass": "db.x2g.large"},
            True,
            "database.instanceClass: got 'db.x2g.large'; the 'x2g' family does not run RDS for PostgreSQL here; "
            "allowed families: m5, m5d, m6g, m6gd, m6i, m6id, m7g, m7i, m8g, r5, r5b, r5d, r6g, r6gd, r6i, r6id, "
            "r7g, r7i, r8g, t3, t4g",
        ),
        (
            {**PROD_RDS, "instanceClass": "t4g.small"},
            True,
            "database.instanceClass: got 't4g.small'; use an RDS instance class, e.g. \"db.t4g.small\"",
        ),
        (
            {**PROD_RDS, "allocatedStorageGb": 10},
            True,
            "database.allocatedStorageGb: got 10; allowed: 20 to 65536 (gp3)",
        ),
        (
            {**PROD_RDS, "allocatedStorageGb": 100, "maxAllocatedStorageGb": 50},
            True,
            "database.maxAllocatedStorageGb: got 50; storage autoscaling's ceiling is above allocatedStorageGb (100) "
            "and at most 65536; leave it unset for no autoscaling",
        ),
        (
            {**PROD_RDS, "backupRetentionDays": 36},
            True,
            "database.backupRetentionDays: got 36; allowed: 1 to 35 days",
        ),
        (
            STAGING_RDS,
            True,
            "database.multiAz: false while security.protect is true; a protected stack's database keeps a standby "
            "in a second zone: set multiAz: true (or security.protect: false for a test stack)",
        ),
        (
            {**PROD_RDS, "backupRetentionDays": 3},
            True,
            "database.backupRetentionDays: got 3 while security.protect is true; a protected stack keeps at least "
            "7 days of backups",
        ),
        (
            {"mode": "rds", "multiAz": True},
            True,
            "database.caBundleSha256: missing; mode 'rds' pins AWS's RDS CA bundle the machines verify the database "
            "with: curl -s https://truststore.pki.rds.amazonaws.com/<region>/<region>-bundle.pem | sha256sum",
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
    values["database"] = json.dumps({**STAGING_RDS, "backupRetentionDays": 1})
    values["security"] = json.dumps({**json.loads(values["security"]), "protect": False})
    database = load_settings(values, stack="prod", region="eu-west-1").database
    assert (database.rds_multi_az, database.rds_backup_retention_days) == (False, 1)
