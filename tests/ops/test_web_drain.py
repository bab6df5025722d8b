"""Web restarts drop no request: deploy, rollback and rotate-token take each web instance out of
the load balancer (Auto Scaling Standby, target drained) before its gunicorn restarts and back
once healthy. Two web instances are real gunicorn processes behind a load-balancer stand-in
that routes only to targets moto's ELBv2 says are healthy (see load_balancer.py for what it
models of AWS that moto does not); the rest of each instance is the ops tests' fake instances."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ops.errors import OpsError
from ops.inventory import Instance
from ops.scaling import HELD_PROCESSES
from ops.web_drain import IN_STANDBY, WebDrain
from tests.ops.conftest import REGION, aws_client
from tests.ops.helpers import Run
from tests.ops.load_balancer import APP, GROUP, Gunicorn, LoadBalancer, Restarting, attach_web_group, model_aws
from tests.ops.test_rollout import WEB0, WEB1, deploy, fake
from tests.ops.test_rotation import rotate
from tests.ops.test_scaling import SignalAt, suspended


@pytest.fixture
def web_group(stack: dict[str, str]) -> tuple[Any, str]:
    return attach_web_group(aws_client("ec2"), aws_client("autoscaling"), aws_client("elbv2"), stack)


# The module's tests share the two web instances' gunicorns (one xdist worker runs them all, as
# every test of tests/ops: tests/ops/conftest.py): starting a pair and stopping it gracefully
# cost more than most of these tests. AWS's side (moto, the group, the stand-in balancer) is
# still made afresh for each test.


@pytest.fixture(scope="module")
def gunicorns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gunicorn, Gunicorn]]:
    app_dir = tmp_path_factory.mktemp("web")
    (app_dir / "app.py").write_text(APP)
    pair = (Gunicorn(app_dir), Gunicorn(app_dir))
    try:
        # Both at once, here and when they stop: a gunicorn takes a tenth of a second to answer
        # and a quarter second to stop gracefully.
        for backend in pair:
            backend.spawn()
        for backend in pair:
            backend.wait_answering()
        yield pair
    finally:
        for backend in pair:
            backend.signal_stop()
        for backend in pair:
            backend.wait_stopped()


@pytest.fixture
def balancer(
    stack: dict[str, str],
    web_group: tuple[Any, str],
    gunicorns: tuple[Gunicorn, Gunicorn],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LoadBalancer]:
    for backend in gunicorns:
        if backend.process is None or backend.process.poll() is not None:  # a test stopped it
            backend.start()
        backend.restarts = 0
    backends = {stack[WEB0]: gunicorns[0], stack[WEB1]: gunicorns[1]}
    balancer = LoadBalancer(REGION, web_group[1], backends)
    with model_aws(balancer, monkeypatch):
        yield balancer


def deploy_rollback_rotate(stack, ssm_client, capsys, tmp_path, balancer: LoadBalancer) -> list[Run]:
    answers = Restarting(fake(stack), balancer)
    state = tmp_path / "state"
    with balancer.load():
        return [
            deploy(stack, ssm_client, capsys, state, answers, "--release", "r2"),
            deploy(stack, ssm_client, capsys, state, answers, command="rollback"),
            rotate(stack, ssm_client, capsys, answers),
        ]


def group_state(autoscaling: Any) -> tuple[int, int, list[str], list[str]]:
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    return (
        group["MinSize"],
        group["DesiredCapacity"],
        sorted(i["LifecycleState"] for i in group["Instances"]),
        # The marks the tool leaves: every tag but the two the stack is found by.
        [tag["Key"] for tag in group["Tags"] if tag["Key"] not in ("Stack", "Project")],
    )


def test_deploy_rollback_and_rotate_token_drop_no_request(stack, ssm_client, capsys, tmp_path, balancer) -> None:
    runs = deploy_rollback_rotate(stack, ssm_client, capsys, tmp_path, balancer)
    assert [run.code for run in runs] == [0, 0, 0], [run.err for run in runs]
    assert [backend.restarts for backend in balancer.backends.values()] == [3, 3]
    assert balancer.failures == []
    assert balancer.outcomes["200"] > 100, balancer.outcomes  # load ran through all of it
    for run in runs:
        for name in (WEB0, WEB1):
            label = f"{stack[name]} ({name})"
            assert f"{label}: leaving the load balancer (Auto Scaling Standby in {GROUP}) ..." in run.out
            assert f"{label}: healthy in the load balancer again" in run.out
    # Back as it was: both in service, minimum and desired capacity restored, no mark left.
    assert group_state(aws_client("autoscaling")) == (2, 2, ["InService", "InService"], [])
    assert sorted(balancer.healthy()) == sorted(balancer.backends)


def test_the_same_run_without_the_drain_step_drops_requests(
    stack, ssm_client, capsys, tmp_path, balancer, monkeypatch
) -> None:
    @contextmanager
    def restart_in_place(self: WebDrain, instance: Instance) -> Iterator[None]:
        yield

    monkeypatch.setattr(WebDrain, "around_restart", restart_in_place)
    # One deploy is enough to drop requests: each of its two restarts does, without the drain step
    # (the rollback and the rotation would restart the same gunicorns four times more).
    with balancer.load():
        run = deploy(
            stack, ssm_client, capsys, tmp_path / "state", Restarting(fake(stack), balancer), "--release", "r2"
        )
    assert run.code == 0, run.err
    assert [backend.restarts for backend in balancer.backends.values()] == [1, 1]
    assert len(balancer.failures) > 0, balancer.outcomes


def test_a_failed_restart_returns_the_instance_to_service_and_restores_the_group(
    stack, ssm_client, capsys, tmp_path, balancer
) -> None:
    answers = fake(stack, failures={("activate r2", stack[WEB1]): ("Failed", 1, "", "gunicorn did not start\n")})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    assert f"{stack[WEB1]} ({WEB1}): back in service in {GROUP} (its health not waited for)" in run.out
    assert run.err.startswith("deploy r2 STOPPED at step 'activate and restart': activate r2 on")
    assert group_state(aws_client("autoscaling")) == (2, 2, ["InService", "InService"], [])


def test_a_target_that_never_drains_or_turns_healthy_fails_within_the_target_groups_bounds(
    stack, web_group, balancer
) -> None:
    autoscaling, _ = web_group
    now = [0.0]
    # Polled a health-check interval apart: the message pins the bound and the clock that the
    # wait reached it (90 is a multiple of 15). One poll a second was 180 calls to moto's ELBv2.
    drain = WebDrain(
        autoscaling,
        aws_client("elbv2"),
        lambda line: None,
        poll_interval=15,
        clock=lambda: now[0],
        sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
    )
    web0 = Instance(stack[WEB0], WEB0, "web", False)
    balancer.in_flight[stack[WEB0]] = 1  # a request that never ends: draining forever
    with pytest.raises(OpsError, match=r"after 90 s: .* is draining in .*prod-web"):
        with drain.out_of_service(web0):
            raise AssertionError("restarted while still draining")
    assert now[0] == 90  # the deregistration delay (30 s) + WAIT_MARGIN_SECONDS
    assert group_state(autoscaling) == (2, 2, ["InService", "InService"], [])

    balancer.in_flight.clear()
    now[0] = 0.0
    with pytest.raises(OpsError, match=r"after 90 s: .* is initial in .*prod-web"):
        with drain.out_of_service(web0):
            balancer.backends[stack[WEB0]].stop()  # and never starts again
    assert now[0] == 90  # 2 health checks 15 s apart + WAIT_MARGIN_SECONDS
    assert group_state(autoscaling)[2:] == (["InService", "InService"], [])


def test_an_instance_a_killed_run_left_in_standby_is_returned_first(
    stack, ssm_client, capsys, tmp_path, web_group, balancer
) -> None:
    autoscaling, _ = web_group
    # What kill -9 between EnterStandby and ExitStandby leaves.
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=1)
    autoscaling.create_or_update_tags(
        Tags=[
            {
                "ResourceId": GROUP,
                "ResourceType": "auto-scaling-group",
                "Key": IN_STANDBY,
                "Value": f"{stack[WEB0]} min 2",
                "PropagateAtLaunch": False,
            }
        ]
    )
    autoscaling.enter_standby(
        InstanceIds=[stack[WEB0]], AutoScalingGroupName=GROUP, ShouldDecrementDesiredCapacity=True
    )
    assert group_state(autoscaling) == (1, 1, ["InService", "Standby"], [IN_STANDBY])
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r1")
    assert run.code == 0, run.err
    assert run.out.splitlines()[0] == (
        f"Auto Scaling: {stack[WEB0]} was left in Standby in {GROUP} by a run that did not finish; returned it"
    )
    assert group_state(autoscaling) == (2, 2, ["InService", "InService"], [])


def test_a_signal_while_a_web_instance_is_out_returns_it_and_resumes_everything(
    stack, ssm_client, capsys, tmp_path, web_group, balancer
) -> None:
    autoscaling, _ = web_group
    answers = SignalAt(fake(stack), autoscaling, "activate r2", stack[WEB0], signal.SIGTERM)
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 128 + signal.SIGTERM
    assert answers.then is not None and answers.then[0][GROUP] == set(HELD_PROCESSES)  # it was out, group held
    assert f"{stack[WEB0]} ({WEB0}): back in service in {GROUP} (its health not waited for)" in run.out
    assert run.err.startswith("deploy r2 STOPPED at step 'activate and restart': interrupted by SIGTERM")
    assert group_state(autoscaling) == (2, 2, ["InService", "InService"], [])
    assert suspended(autoscaling)[GROUP] == set()
