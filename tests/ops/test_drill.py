"""`python -m ops drill failover` through main(): the replication group found in moto by the
project and stack tags, TestFailover sent to it, the verify checks polled until they pass.

Moto has no TestFailover: the one stand-in here answers that call and does what ElastiCache
does to the group as DescribeReplicationGroups shows it (the replica becomes the primary), on
moto's own state; every other call is moto's."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.elasticache.models import elasticache_backends

from tests.ops.conftest import REGION, aws_client
from tests.ops.fake_instances import FakeInstances
from tests.ops.helpers import VirtualClock, run_ops, waits_on
from userdata.layout import PROJECT_TAG, STACK_TAG


class Ok:
    status_code = 200


@pytest.fixture()
def test_failover_calls(aws: str, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """TestFailover requests the tool sent; each promotes the group's replica in moto."""
    calls: list[dict[str, Any]] = []

    def test_failover(params: dict[str, Any], **_: Any) -> tuple[Ok, dict[str, Any]]:
        request = params["body"]
        calls.append(request)
        group = elasticache_backends[DEFAULT_ACCOUNT_ID][REGION].replication_groups[request["ReplicationGroupId"]]
        (node_group,) = [g for g in group.node_groups if g["node_group_id"] == request["NodeGroupId"]]
        for member in node_group["node_group_members"]:
            member["current_role"] = "replica" if member["current_role"] == "primary" else "primary"
        return Ok(), {"ReplicationGroup": {"ReplicationGroupId": request["ReplicationGroupId"]}}

    session = boto3.session.Session(region_name=REGION)
    session.events.register("before-call.elasticache.TestFailover", test_failover)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    return calls


def replication_group(group_id: str, tags: dict[str, str], replicas: int = 1) -> None:
    aws_client("elasticache").create_replication_group(
        ReplicationGroupId=group_id,
        ReplicationGroupDescription=group_id,
        Engine="redis",
        # Moto lists the replicas as members from this count (ElastiCache: NumCacheClusters - 1).
        ReplicasPerNodeGroup=replicas,
        AutomaticFailoverEnabled=replicas > 0,
        Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
    )


def stack_tags(program_tags: list[dict[str, str]]) -> dict[str, str]:
    return {PROJECT_TAG: program_tags[0][PROJECT_TAG], STACK_TAG: program_tags[0][STACK_TAG]}


def fake(stack: dict[str, str], **options: Any) -> FakeInstances:
    return FakeInstances({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}, **options)


def test_drill_fails_over_this_projects_group_and_waits_for_every_check(
    stack, program_tags, ssm_client, test_failover_calls, capsys
) -> None:
    tags = stack_tags(program_tags)
    replication_group("other-project-prod", tags | {PROJECT_TAG: "other-project"})
    replication_group("prod-redis", tags)
    run = run_ops(
        ["drill", "failover", "--stack", "prod", "--poll-interval", "0.01", "--drill-timeout", "5"],
        fake(stack),
        ssm_client,
        capsys,
    )

    assert run.code == 0, run.err
    assert [(c["ReplicationGroupId"], c["NodeGroupId"]) for c in test_failover_calls] == [("prod-redis", "0001")]
    assert "replication group prod-redis: primary prod-redis-001; TestFailover on 0001" in run.out
    assert "primary prod-redis-002 after" in run.out
    # Every instance verified, the web ones with the healthcheck round-trip.
    assert {s.instance_id for s in run.ssm.sent if s.purpose.startswith("verify")} == set(stack.values())
    assert "healthcheck" in run.out and "FAIL" not in run.out
    assert "workers consuming again (healthcheck round-trip and every check ok)" in run.out.splitlines()[-1]


def test_drill_reports_checks_that_never_pass_and_exits_1(
    stack, program_tags, ssm_client, test_failover_calls, capsys, monkeypatch
) -> None:
    replication_group("prod-redis", stack_tags(program_tags))
    broken = fake(stack, failures={("verify web", "*"): ("Failed", 1, "", "")})
    # Rounds a fifth of a second apart: several fail before the 1 s runs out (at 0.01 s, forty
    # rounds of four instances' verify spent a second of CPU in moto and proved nothing more).
    argv = ["drill", "failover", "--stack", "prod", "--poll-interval", "0.2", "--drill-timeout", "1"]
    waits_on(clock := VirtualClock(), monkeypatch)
    run = run_ops(argv, broken, ssm_client, capsys)
    assert clock.slept >= 1  # the whole second waited out

    assert run.code == 1
    assert run.err.startswith("python -m ops: failed: failover drill: no every verify check passing within")
    assert "FAIL" in run.out  # the last round of checks, as it stood


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([], "expected one ElastiCache replication group tagged"),
        ([("prod-redis", 0)], "has no automatic failover"),
    ],
)
def test_drill_refuses_a_stack_without_a_group_to_fail_over_and_sends_nothing(
    stack, program_tags, ssm_client, test_failover_calls, capsys, groups, message
) -> None:
    for group_id, replicas in groups:
        replication_group(group_id, stack_tags(program_tags), replicas)
    run = run_ops(["drill", "failover", "--stack", "prod"], fake(stack), ssm_client, capsys)

    assert run.code == 2
    assert message in run.err and len(run.err.splitlines()) == 1
    assert test_failover_calls == [] and run.ssm.sent == []


def test_drill_without_a_kind_is_one_line_and_exit_2(capsys) -> None:
    from ops.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["drill", "--stack", "prod"])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
