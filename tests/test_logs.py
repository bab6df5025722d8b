"""The instances' logs in CloudWatch Logs as the program creates them: one group per role with the
configured retention and the stack key, the stack key's policy letting CloudWatch Logs use it for
those groups, and each kind's role allowed to write streams into its own role's group (policies
parsed as JSON). The agent's side (what it reads, where it writes) is in tests/test_log_agent.py."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest

from components.logs import AGENT_LOG_ACTIONS
from offline_render.fake_aws import ACCOUNT
from offline_render.program import StackRender
from tests.conftest import TUNED_OPERATIONS, named, only
from tests.test_access import role_statements

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
GROUPS = {"web": "/django-stack/prod/web", "worker": "/django-stack/prod/worker"}
GROUP_ARNS = [f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{group}" for group in GROUPS.values()]


def instance_groups(render: StackRender) -> dict[str, dict[str, Any]]:
    return {
        r.inputs["name"]: r.inputs
        for r in render.of_type(LOG_GROUP)
        if str(r.inputs.get("name", "")).startswith("/django-stack/")
    }


def test_one_group_per_role_with_the_configured_retention_and_the_stack_key(prod: StackRender, render) -> None:
    groups = instance_groups(prod)
    assert sorted(groups) == sorted(GROUPS.values())
    # The stack key: the one ElastiCache encrypts the broker with.
    stack_key = only(prod, "aws:elasticache/replicationGroup:ReplicationGroup")["kmsKeyId"]
    assert stack_key.startswith(f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/")
    for group in groups.values():
        assert (group["retentionInDays"], group["kmsKeyId"]) == (30, stack_key)
    longer = instance_groups(render(TUNED_OPERATIONS))
    assert {group["retentionInDays"] for group in longer.values()} == {180}


def test_the_stack_key_lets_cloudwatch_logs_encrypt_the_instance_groups(prod: StackRender) -> None:
    policy = json.loads(named(prod, "aws:kms/key:Key", "prod-key")["policy"])
    (statement,) = [s for s in policy["Statement"] if s["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}]
    patterns = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    for arn in GROUP_ARNS:
        assert any(fnmatchcase(arn, pattern) for pattern in patterns), arn
    # Another stack's groups are not this key's business.
    assert not any(
        fnmatchcase(f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/django-stack/staging/web", p) for p in patterns
    )


def log_statements(render: StackRender, role: str = "prod-worker-role") -> list[dict[str, Any]]:
    return [
        s
        for s in role_statements(render, role)
        if any(
            str(action).startswith("logs:")
            for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )
    ]


@pytest.mark.parametrize(("kind", "group"), [("web", "web"), ("worker", "worker"), ("worker-beat", "worker")])
def test_each_kind_may_write_streams_only_into_its_roles_group(prod: StackRender, kind: str, group: str) -> None:
    (statement,) = log_statements(prod, f"prod-{kind}-role")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(AGENT_LOG_ACTIONS)
    assert "logs:CreateLogGroup" not in statement["Action"] and "logs:PutRetentionPolicy" not in statement["Action"]
    arn = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{GROUPS[group]}"
    assert sorted(statement["Resource"]) == sorted([arn, f"{arn}:log-stream:*"])
    if kind == "worker-beat":
        stream = f"{arn}:log-stream:i-0abc/celery-beat.service"
        assert any(fnmatchcase(stream, resource) for resource in statement["Resource"])
    other = next(a for a in GROUP_ARNS if a != arn)
    elsewhere = [
        f"{other}:log-stream:i-0abc/x",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:prod-redis-slow-log:log-stream:x",
    ]
    assert not any(fnmatchcase(e, resource) for e in elsewhere for resource in statement["Resource"])


def test_logs_off_creates_no_group_and_grants_nothing(render) -> None:
    rendered = render({"logs.agent": "off"})
    assert instance_groups(rendered) == {}
    assert all(log_statements(rendered, f"prod-{kind}-role") == [] for kind in ("web", "worker", "worker-beat"))


@pytest.mark.parametrize("retention", [0, 2, 10000])
def test_a_retention_cloudwatch_does_not_offer_is_refused_naming_the_key(render, retention) -> None:
    with pytest.raises(
        Exception, match=rf"django-stack:logs.retentionDays: got {retention}; CloudWatch Logs allows 1, 3"
    ):
        render({"logs.retentionDays": retention})


def test_an_unknown_agent_choice_is_refused_naming_the_key(render) -> None:
    with pytest.raises(Exception, match=r"django-stack:logs.agent"):
        render({"logs.agent": "fluentbit"})
