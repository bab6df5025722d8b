"""The `database` section: `none` opens nothing; `existing` opens exactly the egress from the web and
worker hosts to the database's security group and/or CIDRs on its port (and, with manageIngress, the
matching ingress on the user's group), its connection coming from app.secretParameters. Bad input
is one line naming the key. Asserted on the security group rules' actual inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.security import DatabasePeer, SecurityArgs, SecurityGroups
from config import ConfigError, load_settings
from offline_render.fake_aws import mock_id
from offline_render.program import StackRender
from tests.conftest import diffed, of_type, prod_config_values, rendered

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
DATABASE_GROUP = "sg-0d8a7b6c5e4f32109"
SECRETS = {"DATABASE_URL": "/myapp/prod/database-url"}
BY_GROUP = {"mode": "existing", "securityGroupId": DATABASE_GROUP}


def with_database(database: dict[str, Any], secrets: dict[str, str] | None = None) -> StackRender:
    """prod with this database section and the app's DATABASE_URL among its secret parameters."""
    secret_parameters = SECRETS if secrets is None else secrets
    return rendered("prod", {"database": database, "app.secretParameters": secret_parameters})


def rule_tuples(render: StackRender, type_: str, group: str) -> list[tuple[Any, ...]]:
    """(protocol, from, to, peer) of every rule of this kind on this group."""
    return sorted(
        (r["ipProtocol"], r["fromPort"], r["toPort"], r.get("cidrIpv4") or r["referencedSecurityGroupId"])
        for r in (resource.inputs for resource in render.of_type(type_))
        if r["securityGroupId"] == group
    )


STACK_EGRESS = [("tcp", 80, 80, "0.0.0.0/0"), ("tcp", 443, 443, "0.0.0.0/0")]


def redis_egress() -> tuple[str, int, int, str]:
    return ("tcp", 6379, 6379, mock_id("sg", "prod-redis"))


def test_mode_none_is_the_default_and_opens_nothing(prod: StackRender) -> None:
    none = rendered("prod", {"database": {"mode": "none"}})
    for render in (prod, none):
        for role in ("web", "worker"):
            assert rule_tuples(render, EGRESS, mock_id("sg", f"prod-{role}")) == sorted([*STACK_EGRESS, redis_egress()])
        assert not [r for r in render.resources if "database" in r.name]
    assert sorted(
        (r.type_, r.name, json.dumps(diffed(r.inputs), sort_keys=True, default=str)) for r in none.resources
    ) == (sorted((r.type_, r.name, json.dumps(diffed(r.inputs), sort_keys=True, default=str)) for r in prod.resources))


def test_an_existing_database_by_group_opens_exactly_its_port_to_that_group() -> None:
    render = with_database(BY_GROUP)
    for role in ("web", "worker"):
        assert rule_tuples(render, EGRESS, mock_id("sg", f"prod-{role}")) == sorted(
            [*STACK_EGRESS, redis_egress(), ("tcp", 5432, 5432, DATABASE_GROUP)]
        )
    # Not the user's group to change: no rule is put on it.
    assert rule_tuples(render, INGRESS, DATABASE_GROUP) == []
    assert rule_tuples(render, EGRESS, DATABASE_GROUP) == []


def test_an_existing_database_by_cidrs_and_group_on_its_own_port() -> None:
    render = with_database(
        {
            "mode": "existing",
            "securityGroupId": DATABASE_GROUP,
            "cidrs": ["10.50.1.0/24", "10.50.2.0/24"],
            "port": 6432,
        }
    )
    for role in ("web", "worker"):
        assert rule_tuples(render, EGRESS, mock_id("sg", f"prod-{role}")) == sorted(
            [
                *STACK_EGRESS,
                redis_egress(),
                ("tcp", 6432, 6432, DATABASE_GROUP),
                ("tcp", 6432, 6432, "10.50.1.0/24"),
                ("tcp", 6432, 6432, "10.50.2.0/24"),
            ]
        )
    # Nothing else of the stack changes: the same ingress everywhere as without a database.
    # (Keys sorted: the order Pulumi resolves a resource's inputs in differs between renders.)
    assert sorted(json.dumps(r.inputs, sort_keys=True) for r in render.of_type(INGRESS)) == sorted(
        json.dumps(r.inputs, sort_keys=True) for r in rendered("prod").of_type(INGRESS)
    )


def test_manage_ingress_admits_web_and_worker_on_the_users_group() -> None:
    render = with_database({"mode": "existing", "securityGroupId": DATABASE_GROUP, "manageIngress": True})
    assert rule_tuples(render, INGRESS, DATABASE_GROUP) == [
        ("tcp", 5432, 5432, mock_id("sg", "prod-web")),
        ("tcp", 5432, 5432, mock_id("sg", "prod-worker")),
    ]
    for role in ("web", "worker"):
        assert ("tcp", 5432, 5432, DATABASE_GROUP) in rule_tuples(render, EGRESS, mock_id("sg", f"prod-{role}"))


def test_the_connection_reaches_the_machines_only_as_a_secret_parameter() -> None:
    render = with_database(BY_GROUP)  # the group's render: how the database is reached does not matter here
    web = next(i for i in render.instances if i.role == "web").user_data
    # app-fetch-secrets reads it at boot (the instance role may read that one parameter); its
    # value is never in user-data.
    assert "DATABASE_URL=/myapp/prod/database-url" in web
    grants = json.dumps([r.inputs for r in render.of_type("aws:iam/rolePolicy:RolePolicy")])
    assert "parameter/myapp/prod/database-url" in grants


def test_security_groups_alone_with_a_database_peer(build_alone) -> None:
    """The component with plain inputs: the peer's rules, and nothing with database=None."""

    def build(database: DatabasePeer | None) -> list[Any]:
        return build_alone(
            lambda: SecurityGroups(
                "alone",
                SecurityArgs(
                    vpc_id="vpc-0123456789abcdef0",
                    web_port=8000,
                    load_balancer=False,
                    web_ingress_cidrs=(),
                    web_ingress_security_group_ids=(),
                    tags={},
                    database=database,
                ),
            )
        )

    without = build(None)
    peer = build(DatabasePeer(port=5432, security_group_id=DATABASE_GROUP, manage_ingress=True))
    assert sorted(r.name for r in peer) == sorted(
        [
            *(r.name for r in without),
            "alone-web-to-database",
            "alone-worker-to-database",
            "alone-database-from-web",
            "alone-database-from-worker",
        ]
    )
    ingress = [r.inputs for r in of_type(peer, INGRESS) if r.inputs["securityGroupId"] == DATABASE_GROUP]
    assert sorted(r["referencedSecurityGroupId"] for r in ingress) == sorted(
        [mock_id("sg", "alone-web"), mock_id("sg", "alone-worker")]
    )
    with pytest.raises(ValueError, match="manage_ingress needs security_group_id"):
        DatabasePeer(port=5432, cidrs=("10.0.0.0/16",), manage_ingress=True)
    with pytest.raises(ValueError, match="a security_group_id and/or cidrs"):
        DatabasePeer(port=5432)


# --- bad input: one line naming the key -----------------------------------------------------------


def errors_for(database: dict[str, Any], secrets: dict[str, str] | None = None) -> list[str]:
    values = prod_config_values()
    values["database"] = json.dumps(database)
    app = json.loads(values["app"])
    app["secretParameters"] = SECRETS if secrets is None else secrets
    values["app"] = json.dumps(app)
    with pytest.raises(ConfigError) as raised:
        load_settings(values, stack="prod", region="eu-west-1")
    return str(raised.value).splitlines()


@pytest.mark.parametrize(
    ("database", "line"),
    [
        (
            {"mode": "existing"},
            "django-stack:database.securityGroupId: missing; mode 'existing' needs where the database lives: "
            "securityGroupId and/or cidrs",
        ),
        (
            {"mode": "existing", "cidrs": ["0.0.0.0/0"]},
            "django-stack:database.cidrs: 0.0.0.0/0 would let the hosts reach any address on port 5432; "
            "list the database's own network (its subnets' CIDRs) or use securityGroupId",
        ),
        (
            {"mode": "existing", "cidrs": ["0.0.0.0/1", "128.0.0.0/1"], "port": 6432},
            "django-stack:database.cidrs: 0.0.0.0/1, 128.0.0.0/1 would let the hosts reach any address on port 6432; "
            "list the database's own network (its subnets' CIDRs) or use securityGroupId",
        ),
        (
            {"mode": "existing", "cidrs": ["10.0.0.0/16", "10.0.0.0/16"]},
            "django-stack:database.cidrs: 10.0.0.0/16 listed twice; list each network once",
        ),
        (
            {"mode": "existing", "cidrs": ["10.0.0.0/99"]},
            "django-stack:database.cidrs: '10.0.0.0/99' is not an IPv4 network ('99' is not a valid netmask)",
        ),
        (
            {"mode": "existing", "securityGroupId": DATABASE_GROUP, "port": 70000},
            "django-stack:database.port: got 70000; expected `int` <= 65535",
        ),
        (
            {"mode": "existing", "securityGroupId": DATABASE_GROUP, "port": 0},
            "django-stack:database.port: got 0; expected `int` >= 1",
        ),
        (
            {"mode": "existing", "cidrs": ["10.0.0.0/16"], "manageIngress": True},
            "django-stack:database.manageIngress: needs securityGroupId: the database's group whose ingress "
            "the stack adds",
        ),
        (
            {"mode": "existing", "securityGroupId": "sg-1"},
            "django-stack:database.securityGroupId: got 'sg-1'; use a security group id, e.g. \"sg-0a1b2c3d4e5f67890\"",
        ),
        (
            {"port": 5432},
            "django-stack:database.port: only with mode 'existing'; with mode 'none' no database is reached",
        ),
        (
            {"mode": "none", "cidrs": ["10.0.0.0/16"]},
            "django-stack:database.cidrs: only with mode 'existing'; with mode 'none' no database is reached",
        ),
        (
            {"securityGroupId": DATABASE_GROUP},
            "django-stack:database.securityGroupId: only with mode 'existing'; with mode 'none' no database is reached",
        ),
        ({"mode": "aurora"}, "django-stack:database.mode: got 'aurora'; allowed: 'none', 'existing', 'rds'"),
        (
            {"mode": "existing", "host": "db.internal"},
            "django-stack:database.host: unknown key; allowed keys here: mode, securityGroupId, cidrs, port, "
            "manageIngress, engineVersion, instanceClass, allocatedStorageGb, maxAllocatedStorageGb, "
            "backupRetentionDays, multiAz, name, username, caBundleSha256",
        ),
    ],
)
def test_a_bad_database_section_is_one_line_naming_the_key(database: dict[str, Any], line: str) -> None:
    assert errors_for(database) == [line]


def test_an_existing_database_needs_its_connection_among_the_secret_parameters() -> None:
    assert errors_for({"mode": "existing", "securityGroupId": DATABASE_GROUP}, secrets={"EMAIL_KEY": "/myapp/k"}) == [
        "django-stack:app.secretParameters: database.mode 'existing' needs the connection here, from a SecureString "
        "you create: DATABASE_URL (postgres://user:password@host:5432/name), or its password as DATABASE_PASSWORD "
        "or PGPASSWORD"
    ]


@pytest.mark.parametrize("secret", ["DATABASE_URL", "DATABASE_PASSWORD", "PGPASSWORD"])
def test_the_url_or_its_password_is_the_connection(secret: str) -> None:
    values = prod_config_values()
    values["database"] = json.dumps({"mode": "existing", "cidrs": ["10.50.0.0/16"]})
    app = json.loads(values["app"])
    app["secretParameters"] = {secret: "/myapp/prod/db"}
    values["app"] = json.dumps(app)
    database = load_settings(values, stack="prod", region="eu-west-1").database
    assert (database.mode, database.cidrs, database.database_port) == ("existing", ("10.50.0.0/16",), 5432)
