"""rotate-token through main(): Beat paused, each worker then each web instance moved to the
token in Parameter Store and checked, Beat resumed and checked, then the pulumi steps; a
failing check stops it with what is done. Command results are injected at the boto3 boundary
(moto runs no commands); the scripts' own text is checked in test_scripts.py."""

from __future__ import annotations

from typing import Any

from ops.rollout import RESTART_MARGIN_SECONDS
from ops.rotation import NEXT_STEPS
from ops.scripts import refresh_secrets_script, token_check_script
from tests.ops.fake_instances import FakeInstances
from tests.ops.helpers import Run, run_ops

WEB0, WEB1, WORKER1, BEAT = "prod-web-0", "prod-web-1", "prod-worker-0", "prod-worker-beat-0"


def fake(stack: dict[str, str], **options: Any) -> FakeInstances:
    return FakeInstances({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}, **options)


def rotate(stack, ssm_client, capsys, answers: FakeInstances, *extra: str) -> Run:
    return run_ops(["rotate-token", "--stack", "prod", "--poll-interval", "0.01", *extra], answers, ssm_client, capsys)


def named(stack: dict[str, str], run: Run) -> list[tuple[str, str]]:
    names = {iid: name for name, iid in stack.items()}
    return [(names[iid], purpose) for iid, purpose in run.purposes()]


def test_rotate_token_moves_one_instance_at_a_time_with_beat_paused(stack, ssm_client, capsys) -> None:
    run = rotate(stack, ssm_client, capsys, fake(stack))
    assert run.code == 0, run.err
    moves = [
        (name, purpose)
        for name, role in ((WORKER1, "worker"), (BEAT, "worker"), (WEB0, "web"), (WEB1, "web"))
        for purpose in ("refresh secrets", "check token", f"verify {role}")
    ]
    assert named(stack, run) == [
        *[(name, "read stop timeouts") for name in (WEB0, WEB1, WORKER1, BEAT)],
        (BEAT, "beat pause"),
        *moves,
        (BEAT, "beat resume"),
        (BEAT, "check token"),
    ]
    assert run.out.splitlines()[-4:] == [
        "next, so that only the new token works (ElastiCache stops accepting the old one):",
        f"  {NEXT_STEPS[0]}",
        "then, so that the next authTokenVersion bump starts a rotation instead of cutting the old token:",
        f"  {NEXT_STEPS[1]}",
    ]


def test_rotate_token_sends_the_scripts_with_the_units_own_restart_timeout(stack, ssm_client, capsys) -> None:
    run = rotate(stack, ssm_client, capsys, fake(stack))
    sent = {(s.instance_id, s.purpose): s for s in run.ssm.sent}
    refresh = sent[(stack[WORKER1], "refresh secrets")]
    assert (refresh.script, refresh.execution_timeout) == (
        refresh_secrets_script("worker"),
        str(1860 + RESTART_MARGIN_SECONDS),
    )
    assert sent[(stack[WEB0], "refresh secrets")].execution_timeout == str(60 + RESTART_MARGIN_SECONDS)
    # Beat is checked once it runs again, with its own unit included.
    assert [s.script for s in run.ssm.sent if s.instance_id == stack[BEAT] and s.purpose == "check token"] == [
        token_check_script("worker", expect_beat=False),
        token_check_script("worker", expect_beat=True),
    ]


def test_an_instance_still_on_the_old_token_stops_the_rotation_before_any_set_advice(stack, ssm_client, capsys) -> None:
    stale = ("Failed", 1, "", "not on the token in Parameter Store: gunicorn.service\n")
    answers = fake(stack, failures={("check token", stack[WEB0]): stale})
    run = rotate(stack, ssm_client, capsys, answers)
    assert run.code == 1
    assert run.err.splitlines() == [
        f"rotate-token STOPPED at step 'move {stack[WEB0]} ({WEB0})': check token on {stack[WEB0]} ({WEB0}): "
        "Failed (exit 1): not on the token in Parameter Store: gunicorn.service",
        f"  on the new token (restarted and checked): {stack[WORKER1]} ({WORKER1}), {stack[BEAT]} ({BEAT})",
        "  Beat: PAUSED or unknown; to resume it: python -m ops beat resume --stack prod",
        "to start over: python -m ops rotate-token --stack prod",
        "do not move redis.authTokenUpdateStrategy to SET until rotate-token has finished",
    ]
    assert NEXT_STEPS[0] not in run.out
    assert named(stack, run)[-1] == (WEB0, "check token")  # nothing sent after the failure
