"""The policy pack on stacks that reach an existing database (tests/test_database.py): its egress
and the ingress on the user's group pass every policy, and a rule opening the database's port to
the internet on that group is still caught."""

from __future__ import annotations

from typing import Any

import pytest

from offline_render.fake_aws import mock_id
from ops.stack import program_project
from policy import rules
from policy.offline import violations
from tests.test_database import DATABASE_GROUP, INGRESS, with_database


@pytest.mark.parametrize(
    "database",
    [
        {"mode": "existing", "securityGroupId": DATABASE_GROUP, "manageIngress": True, "cidrs": ["10.50.0.0/16"]},
        {"mode": "existing", "cidrs": ["10.50.0.0/16"], "port": 3306},
    ],
)
def test_a_stack_reaching_its_database_passes_every_policy(database: dict[str, Any]) -> None:
    assert violations(with_database(database)) == []


def test_the_database_port_open_to_the_internet_on_its_group_violates() -> None:
    render = with_database({"mode": "existing", "securityGroupId": DATABASE_GROUP, "manageIngress": True})
    (from_web,) = [
        r.inputs
        for r in render.of_type(INGRESS)
        if r.inputs["securityGroupId"] == DATABASE_GROUP
        and r.inputs["referencedSecurityGroupId"] == mock_id("sg", "prod-web")
    ]
    world = {k: v for k, v in from_web.items() if k != "referencedSecurityGroupId"} | {"cidrIpv4": "0.0.0.0/0"}
    stack = rules.StackId(program_project(), "prod")
    problems = [message for policy in rules.RESOURCE_POLICIES for message in policy.check(INGRESS, world, stack)]
    assert problems == [
        "ingress from 0.0.0.0/0 to tcp 5432-5432: the internet may reach ports [80, 443] only, each alone"
    ]
