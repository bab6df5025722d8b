"""rotate-db-password through main(): the stack's RDS instance found by its tags in moto, its
managed secret rotated by moto's Secrets Manager (RotateSecret), the wait for the new AWSCURRENT
version, then the refresh script on every instance (results injected at the boto3 boundary, as
for the other commands); bad input and a missing database change nothing."""

from __future__ import annotations

from typing import Any

import pytest

import ops.rotation
from ops.scripts import refresh_database_password_script
from tests.conftest import only
from tests.ops.conftest import aws_client
from tests.ops.fake_instances import FakeInstances
from tests.ops.helpers import Run, VirtualClock, run_ops, waits_on
from tests.test_rds import RDS, with_rds

REFRESH = "refresh database password"


def fake(stack: dict[str, str], **options: Any) -> FakeInstances:
    return FakeInstances({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}, **options)


@pytest.fixture()
def database(stack: dict[str, str]) -> str:
    """prod's RDS instance in moto with the tags the program gives it, its password managed by
    RDS (moto keeps it in its Secrets Manager): the secret's ARN."""
    inputs = only(with_rds(), RDS)
    created = aws_client("rds").create_db_instance(
        DBInstanceIdentifier=inputs["identifier"],
        DBInstanceClass=inputs["instanceClass"],
        Engine="postgres",
        MasterUsername=inputs["username"],
        ManageMasterUserPassword=True,
        AllocatedStorage=20,
        Tags=[{"Key": key, "Value": value} for key, value in inputs["tags"].items()],
    )
    return str(created["DBInstance"]["MasterUserSecret"]["SecretArn"])


def current(secret_arn: str) -> str:
    stages = aws_client("secretsmanager").describe_secret(SecretId=secret_arn)["VersionIdsToStages"]
    (version,) = [v for v, labels in stages.items() if "AWSCURRENT" in labels]
    return version


def rotate(stack, ssm_client, capsys, answers: FakeInstances, *extra: str) -> Run:
    argv = ["rotate-db-password", "--stack", "prod", "--poll-interval", "0.01", *extra]
    return run_ops(argv, answers, ssm_client, capsys)


def test_it_rotates_the_stacks_secret_waits_for_the_new_version_and_refreshes_every_instance(
    stack, database, ssm_client, capsys
) -> None:
    before = current(database)
    run = rotate(stack, ssm_client, capsys, fake(stack))
    assert run.code == 0, run.err
    after = current(database)
    assert after != before
    assert run.purposes() == [(iid, REFRESH) for iid in (stack[n] for n in sorted(stack, key=order))]
    assert {s.script for s in run.ssm.sent} == {refresh_database_password_script()}
    lines = run.out.splitlines()
    assert lines[0] == f"rotate-db-password: 4 instances, secret {database}"
    assert f"the secret's current version is {after} (was {before})" in lines
    assert lines[-1] == "rotate-db-password: every instance (4) wrote the new password"


def order(name: str) -> tuple[int, bool, str]:
    """The tool's order: web first, then workers, the Beat instance last, by name."""
    return (0 if "-web-" in name else 1, "beat" in name, name)


def test_a_stack_without_its_database_is_one_line_and_nothing_is_sent(stack, ssm_client, capsys) -> None:
    run = rotate(stack, ssm_client, capsys, fake(stack))
    assert (run.code, run.out, run.ssm.sent) == (2, "", [])
    assert run.err == (
        "python -m ops: error: --stack: expected one RDS instance tagged Project=django-stack, Stack=prod "
        "(database.mode rds), found 0: none\n"
    )


def test_a_bad_rotation_timeout_is_one_line_and_nothing_rotates(stack, database, ssm_client, capsys) -> None:
    before = current(database)
    with pytest.raises(SystemExit) as refused:
        rotate(stack, ssm_client, capsys, fake(stack), "--rotation-timeout", "0")
    assert refused.value.code == 2
    assert capsys.readouterr().err == (
        "python -m ops rotate-db-password: error: argument --rotation-timeout: '0' is not a whole number of "
        "seconds from 1 to 172800 (SSM's maximum)\n"
    )
    assert current(database) == before


def test_a_rotation_that_does_not_finish_stops_before_any_refresh(
    stack, database, ssm_client, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(ops.rotation, "current_version", lambda secrets, arn: "v-old")
    waits_on(clock := VirtualClock(), monkeypatch)
    run = rotate(stack, ssm_client, capsys, fake(stack), "--rotation-timeout", "1")
    assert run.code == 1 and run.ssm.sent == [] and clock.slept >= 1  # the whole second waited out
    assert run.err.splitlines()[:2] == [
        "rotate-db-password STOPPED at step 'wait for the new version': AWSCURRENT still v-old after 1 s "
        "(describe-secret shows the rotation)",
        "  password file rewritten on: none",
    ]


def test_an_instance_that_cannot_read_the_new_password_stops_it_naming_those_done(
    stack, database, ssm_client, capsys
) -> None:
    failing = (
        "Failed",
        1,
        "",
        "app-database-password.service exited 75 (journalctl ...): the password file holds what it held",
    )
    answers = fake(stack, failures={(REFRESH, stack["prod-web-1"]): failing})
    run = rotate(stack, ssm_client, capsys, answers)
    assert run.code == 1
    assert [iid for iid, _ in run.purposes()] == [stack["prod-web-0"], stack["prod-web-1"]]
    report = run.err.splitlines()
    assert report[0].startswith(f"rotate-db-password STOPPED at step 'refresh {stack['prod-web-1']} (prod-web-1)': ")
    assert report[0].endswith("exited 75 (journalctl ...): the password file holds what it held")
    assert report[1] == f"  password file rewritten on: {stack['prod-web-0']} (prod-web-0)"
    assert report[-1] == "to refresh them now: python -m ops rotate-db-password --stack prod"
