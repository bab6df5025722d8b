"""verify and beat pause/resume end to end through main(): EC2 discovery and SSM send_command
against moto; command results injected at the boto3 boundary (see ScriptedSsm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError

from ops.executor import DOCUMENT
from ops.scripts import beat_script, verify_script
from tests.ops.conftest import ScriptedSsm
from tests.ops.fake_instances import FakeInstances, check_lines
from tests.ops.helpers import run_ops

VERIFY_DEFAULTS = {"healthcheck_task": "celery.accumulate", "check_timeout": 20}


def fake(stack: dict[str, str], **options: Any) -> FakeInstances:
    return FakeInstances({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}, **options)


def test_beat_pause_stops_beat_on_the_tagged_instance_only(stack, ssm_client, capsys) -> None:
    run = run_ops(["beat", "pause", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0
    assert [(s.instance_id, s.document, s.script) for s in run.ssm.sent] == [
        (stack["prod-worker-beat-0"], DOCUMENT, beat_script("stop"))
    ]
    assert "Beat paused: celery-beat.service: inactive" in run.out


def test_beat_resume_starts_beat_and_checks_it_is_active(stack, ssm_client, capsys) -> None:
    run = run_ops(["beat", "resume", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0
    assert [(s.instance_id, s.script) for s in run.ssm.sent] == [(stack["prod-worker-beat-0"], beat_script("start"))]
    assert "systemctl start celery-beat.service" in beat_script("start")


def test_moto_received_the_documents_and_commands_the_tool_sent(stack, ssm_client, capsys) -> None:
    argv = ["beat", "pause", "--stack", "prod", "--command-timeout", "45"]
    run = run_ops(argv, fake(stack), ssm_client, capsys, ssm_through_sdk=True)
    (command,) = ssm_client.list_commands()["Commands"]
    assert command["DocumentName"] == "AWS-RunShellScript"
    # moto adds every instance to a command sent without Targets (its quirk), so the instance the
    # request named is read from the wrapper, which refuses any request naming more than one.
    assert [sent.instance_id for sent in run.ssm.sent] == [stack["prod-worker-beat-0"]]
    assert command["Parameters"] == {"commands": beat_script("stop").splitlines(), "executionTimeout": ["45"]}


def test_the_wrapper_keeps_a_command_as_the_sdk_path_does_and_refuses_what_the_sdk_refuses(stack, ssm_client) -> None:
    """ScriptedSsm hands commands to moto's SSM in place: what list_commands reads back is what
    the SDK path stores for the same request, and a request the SDK would refuse is refused."""
    request = {
        "InstanceIds": [stack["prod-web-0"]],
        "DocumentName": DOCUMENT,
        "Comment": "ops: verify web",
        "Parameters": {"commands": ["true", "echo ok"], "executionTimeout": ["45"]},
    }
    kept = {"CommandId", "RequestedDateTime", "ExpiresAfter"}  # made afresh for each command
    for through_sdk in (True, False):
        ScriptedSsm(ssm_client, fake(stack), through_sdk=through_sdk).send_command(**request)
    via_sdk, in_place = ({k: v for k, v in c.items() if k not in kept} for c in ssm_client.list_commands()["Commands"])
    assert via_sdk == in_place and in_place["Parameters"] == request["Parameters"], (via_sdk, in_place)
    refused = request | {"Parameters": {"commands": ["true"], "executionTimeout": [45]}}  # an int, not a string
    with pytest.raises(ParamValidationError, match="executionTimeout"):
        ScriptedSsm(ssm_client, fake(stack)).send_command(**refused)
    assert len(ssm_client.list_commands()["Commands"]) == 2


def test_beat_that_does_not_stop_fails_with_its_state(stack, ssm_client, capsys) -> None:
    answers = fake(stack, failures={("beat pause", "*"): ("Failed", 1, "celery-beat.service: deactivating\n", "")})
    run = run_ops(["beat", "pause", "--stack", "prod"], answers, ssm_client, capsys)
    assert run.code == 1
    assert run.err == (
        f"python -m ops: failed: beat pause on {stack['prod-worker-beat-0']} (prod-worker-beat-0): "
        "Failed (exit 1): celery-beat.service: deactivating\n"
    )


def test_beat_pause_refuses_a_second_beat_tag_and_sends_nothing(stack, program_tags, ssm_client, capsys) -> None:
    from tests.ops.conftest import launch

    launch(next(t for t in program_tags if t.get("celery-beat")) | {"Name": "prod-worker-beat-2"})
    run = run_ops(["beat", "pause", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 1
    assert "expected exactly one running instance tagged celery-beat=true, found 2" in run.err
    assert run.ssm.sent == [] and ssm_client.list_commands()["Commands"] == []


def test_verify_sends_each_instance_its_roles_checks_and_prints_the_table(stack, ssm_client, capsys) -> None:
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0, run.err
    assert [(s.instance_id, s.script) for s in run.ssm.sent] == [
        (stack["prod-web-0"], verify_script("web", expect_beat=False, **VERIFY_DEFAULTS)),
        (stack["prod-web-1"], verify_script("web", expect_beat=False, **VERIFY_DEFAULTS)),
        (stack["prod-worker-0"], verify_script("worker", expect_beat=False, **VERIFY_DEFAULTS)),
        (stack["prod-worker-beat-0"], verify_script("worker", expect_beat=True, **VERIFY_DEFAULTS)),
    ]
    lines = run.out.splitlines()
    assert lines[0].split() == ["instance", "role", "check", "result", "time", "detail"]
    assert len(lines) == 1 + 16 + 1
    beat_row = next(line for line in lines if "prod-worker-beat-0" in line and "celery_ping" in line)
    assert beat_row.split()[:6] == [
        stack["prod-worker-beat-0"],
        "(prod-worker-beat-0)",
        "worker",
        "+beat",
        "celery_ping",
        "ok",
    ]
    assert lines[-1] == "16 of 16 checks passed on 4 instances"


def test_verify_flags_reach_the_script(stack, ssm_client, capsys) -> None:
    run = run_ops(
        ["verify", "--stack", "prod", "--healthcheck-task", "other.tasks.ping", "--check-timeout", "7"],
        fake(stack),
        ssm_client,
        capsys,
    )
    assert run.ssm.sent[0].script == verify_script(
        "web", expect_beat=False, healthcheck_task="other.tasks.ping", check_timeout=7
    )


def test_verify_exits_1_and_shows_the_failing_check(stack, ssm_client, capsys) -> None:
    failing = check_lines("worker", {"redis_ping": "redis 10.0.3.4:6379: NOAUTH Authentication required."})
    answers = fake(stack, failures={("verify worker", stack["prod-worker-0"]): ("Failed", 1, failing, "")})
    run = run_ops(["verify", "--stack", "prod"], answers, ssm_client, capsys)
    assert run.code == 1
    row = next(line for line in run.out.splitlines() if "prod-worker-0" in line and "redis_ping" in line)
    assert "FAIL" in row and row.endswith("NOAUTH Authentication required.")
    assert run.out.splitlines()[-1] == "15 of 16 checks passed on 4 instances"


def test_verify_marks_every_check_failed_when_the_command_never_finishes(stack, ssm_client, capsys) -> None:
    # The invocation stays InProgress (injected); the wait is bounded by --command-timeout plus
    # the delivery grace, measured on a fake clock so the test does not wait for real.
    now = [0.0]
    answers = fake(stack, failures={("verify web", stack["prod-web-0"]): ("InProgress", -1, "", "")})
    run = run_ops(
        ["verify", "--stack", "prod", "--command-timeout", "5"],
        answers,
        ssm_client,
        capsys,
        clock=lambda: now[0],
        sleep=lambda seconds: now.__setitem__(0, now[0] + 1),
    )
    assert run.code == 1
    rows = [line for line in run.out.splitlines() if "prod-web-0" in line]
    assert len(rows) == 4 and all("FAIL" in row and "no result: TimedOut" in row for row in rows)
    assert "no result after 5 s (last status: InProgress); command cancelled" in rows[0]
    assert len(run.ssm.cancelled) == 1
    assert now[0] == 5 + 30  # --command-timeout + DELIVERY_GRACE_SECONDS, then given up


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["verify", "--stack", "nope"],
            "python -m ops: error: --stack: no running instance is tagged Project=django-stack, Stack=nope "
            "(check the stack name, the project and the region)",
        ),
        (
            ["verify", "--stack", "prod", "--check-timeout", "soon"],
            "python -m ops verify: error: argument --check-timeout: 'soon' is not a whole number of seconds from 1 "
            "to 172800 (SSM's maximum)",
        ),
        (
            ["deploy", "--stack", "prod", "--drain-timeout", "-1", "--release", "r2"],
            "python -m ops deploy: error: argument --drain-timeout: '-1' is not a whole number of seconds from 1 "
            "to 172800 (SSM's maximum)",
        ),
        (
            ["deploy", "--stack", "prod", "--restart-timeout", "172801", "--release", "r2"],
            "python -m ops deploy: error: argument --restart-timeout: '172801' is not a whole number of seconds "
            "from 1 to 172800 (SSM's maximum)",
        ),
        (["deploy", "--stack", "prod"], "python -m ops deploy: error: the following arguments are required: --release"),
        (
            ["deploy", "--stack", "prod", "--release", "../etc"],
            "python -m ops deploy: error: argument --release: '../etc' is not a release name; use up to 64 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. \"2026.11.25-1\"",
        ),
        (  # the stack config and the build script refuse '+', so the tool does too
            ["deploy", "--stack", "prod", "--release", "r2+local"],
            "python -m ops deploy: error: argument --release: 'r2+local' is not a release name; use up to 64 "
            "letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. \"2026.11.25-1\"",
        ),
        (
            ["beat", "pause", "--stack", "prod", "--poll-interval", "0"],
            "python -m ops beat pause: error: argument --poll-interval: '0' is not a number of seconds > 0",
        ),
        (["verify"], "python -m ops: error: --stack: required (or --outputs with a 'stack' output)"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument_and_changes_nothing(
    stack, ssm_client, capsys, argv, message
) -> None:
    try:
        run = run_ops(argv, fake(stack), ssm_client, capsys)
        code, err = run.code, run.err
    except SystemExit as exit_:  # argparse's own refusals
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2
    assert err == message + "\n"
    assert ssm_client.list_commands()["Commands"] == []


def test_no_region_anywhere_is_refused_naming_the_region_flag(stack, ssm_client, capsys, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert (run.code, run.err) == (
        2,
        "python -m ops: error: --region: none given, none in the outputs, AWS_REGION, AWS_DEFAULT_REGION or "
        "the AWS config file\n",
    )


def test_aws_region_is_honoured_before_aws_default_region(stack, ssm_client, capsys, monkeypatch) -> None:
    # The instances live in moto's eu-west-1; us-east-1 has none.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0, run.err
    assert len(run.ssm.sent) == 4


def test_aws_default_region_alone_is_honoured(stack, ssm_client, capsys, monkeypatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0, run.err


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            json.dumps({"stack": "prod", "region": ["eu-west-1"]}).encode(),
            "python -m ops: error: --region: the outputs' region is ['eu-west-1'], not an AWS region name "
            "such as eu-west-1",
        ),
        (
            json.dumps({"stack": "prod", "region": "eu-west-1\n"}).encode(),
            "python -m ops: error: --region: the outputs' region is 'eu-west-1\\n', not an AWS region name "
            "such as eu-west-1",
        ),
        (
            b'{"stack": "prod", "region": "eu-west-1", "note": "\xff"}',
            "python -m ops: error: --outputs: {path} is not UTF-8 text (byte 50); expected the JSON of "
            "`pulumi stack output --json`",
        ),
        (
            json.dumps({"stack": 5}).encode(),
            "python -m ops: error: --stack: 5 is not a stack name (letters, digits, '_', '.', '-')",
        ),
    ],
)
def test_outputs_with_wrong_values_are_one_line_and_nothing_is_sent(
    stack, ssm_client, capsys, tmp_path: Path, outputs, message
) -> None:
    path = tmp_path / "outputs.json"
    path.write_bytes(outputs)
    run = run_ops(["verify", "--outputs", str(path)], fake(stack), ssm_client, capsys)
    assert (run.code, run.err) == (2, message.format(path=path) + "\n")
    assert run.ssm.sent == []


def test_aws_region_that_is_not_a_region_is_refused(stack, ssm_client, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_REGION", "Ireland")
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert (run.code, run.err) == (
        2,
        "python -m ops: error: --region: AWS_REGION is 'Ireland', not an AWS region name such as eu-west-1\n",
    )


def test_stack_and_region_come_from_pulumi_outputs(stack, ssm_client, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"stack": "prod", "region": "eu-west-1", "beatInstanceId": stack["prod-worker-beat-0"]})
    )
    run = run_ops(["beat", "pause", "--outputs", str(outputs)], fake(stack), ssm_client, capsys)
    assert run.code == 0, run.err
    assert [s.instance_id for s in run.ssm.sent] == [stack["prod-worker-beat-0"]]


def test_outputs_of_another_stack_are_refused(stack, ssm_client, capsys, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"stack": "staging"}))
    run = run_ops(["beat", "pause", "--stack", "prod", "--outputs", str(outputs)], fake(stack), ssm_client, capsys)
    assert (run.code, run.err) == (
        2,
        "python -m ops: error: --stack: 'prod' contradicts the outputs' stack 'staging'\n",
    )
    assert run.ssm.sent == []


def test_unreadable_outputs_are_refused_naming_the_flag(stack, ssm_client, capsys, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text("Current stack outputs (3):")
    run = run_ops(["verify", "--outputs", str(outputs)], fake(stack), ssm_client, capsys)
    assert run.code == 2
    assert run.err.startswith(
        f"python -m ops: error: --outputs: {outputs} is not the JSON of `pulumi stack output --json`"
    )
