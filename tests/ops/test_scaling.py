"""A deploy holds the stack's Auto Scaling groups still (no launch, no replacement) while it
switches releases, and lets them go however it ends (a failure, SIGTERM/SIGINT/SIGHUP); a group
a killed run left suspended is found by its tag and resumed by the next run: moto's Auto
Scaling in this process. The signals are real ones, sent to this process at a chosen step."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from ops.scaling import HELD_PROCESSES, SUSPENDED_BY, suspend
from tests.ops.conftest import aws_client, launch
from tests.ops.fake_instances import Answer, FakeInstances
from tests.ops.helpers import run_ops
from tests.ops.test_rollout import BEAT, R1, R2, WEB0, WORKER1, deploy, fake
from tests.ops.test_rotation import rotate


def suspended(autoscaling: Any) -> dict[str, set[str]]:
    return {
        group["AutoScalingGroupName"]: {process["ProcessName"] for process in group["SuspendedProcesses"]}
        for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    }


# Another project's prod in the same account: its own Stack=prod tag, its own Project tag.
LOOK_ALIKE = "shop"


def marked(autoscaling: Any) -> dict[str, str]:
    return {
        group["AutoScalingGroupName"]: tag["Value"]
        for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        for tag in group["Tags"]
        if tag["Key"] == SUSPENDED_BY
    }


@pytest.fixture
def groups(aws: str) -> Any:
    """prod's three groups, a staging group and another project's prod web group, empty (their
    instances are the tests' own), tagged as the program tags them."""
    ec2, autoscaling = aws_client("ec2"), aws_client("autoscaling")
    template = ec2.create_launch_template(
        LaunchTemplateName="t", LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    for project, stack, kind in (
        ("django-stack", "prod", "web"),
        ("django-stack", "prod", "worker"),
        ("django-stack", "prod", "worker-beat"),
        ("django-stack", "staging", "web"),
        (LOOK_ALIKE, "prod", "web"),
    ):
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"{stack}-{kind}-abc123" if project == "django-stack" else f"{project}-{stack}-{kind}",
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=0,
            AvailabilityZones=["eu-west-1a"],
            Tags=[
                {"Key": "Project", "Value": project, "PropagateAtLaunch": True},
                {"Key": "Stack", "Value": stack, "PropagateAtLaunch": True},
            ],
        )
    return autoscaling


class Watching:
    """Answers like healthy instances and notes what was suspended when the first worker switched."""

    def __init__(self, answers: FakeInstances, autoscaling: Any) -> None:
        self.answers, self.autoscaling = answers, autoscaling
        self.during: dict[str, set[str]] | None = None

    def __call__(self, instance: str, purpose: str, script: str) -> Any:
        if purpose.startswith("activate") and self.during is None:
            self.during = suspended(self.autoscaling)
        return self.answers(instance, purpose, script)


def test_a_deploy_suspends_launches_and_replacements_on_the_stacks_groups_then_resumes_them(
    stack, groups, ssm_client, capsys, tmp_path
) -> None:
    watching = Watching(fake(stack), groups)
    argv = ["deploy", "--stack", "prod", "--state-dir", str(tmp_path), "--poll-interval", "0.01", "--release", "r2"]
    run = run_ops(argv, watching, ssm_client, capsys)
    assert run.code == 0, run.err
    held = set(HELD_PROCESSES)
    assert watching.during == {
        "prod-web-abc123": held,
        "prod-worker-abc123": held,
        "prod-worker-beat-abc123": held,
        "staging-web-abc123": set(),
        "shop-prod-web": set(),
    }
    assert all(not processes for processes in suspended(groups).values())
    prod = "prod-web-abc123, prod-worker-abc123, prod-worker-beat-abc123"
    lines = run.out.splitlines()
    assert lines[0] == f"Auto Scaling: Launch, ReplaceUnhealthy, AZRebalance, InstanceRefresh suspended on {prod}"
    assert lines[-1] == f"Auto Scaling: Launch, ReplaceUnhealthy, AZRebalance, InstanceRefresh resumed on {prod}"


def test_a_stopped_deploy_resumes_the_groups_too(stack, groups, ssm_client, capsys, tmp_path) -> None:
    failing = fake(stack, failures={("activate r2", stack[WORKER1]): ("Failed", 1, "", "restart failed")})
    run = deploy(stack, ssm_client, capsys, tmp_path, failing, "--release", "r2")
    assert run.code == 1
    assert all(not processes for processes in suspended(groups).values())
    assert "resumed on prod-web-abc123" in run.out


def test_another_projects_prod_is_never_suspended_nor_sent_a_command(
    stack, groups, program_tags, ssm_client, capsys, tmp_path
) -> None:
    # Every instance of the program's prod once more, as another project's (Names and all alike).
    look_alike = {launch(tags | {"Project": LOOK_ALIKE}) for tags in program_tags}
    watching = Watching(fake(stack), groups)
    argv = ["deploy", "--stack", "prod", "--state-dir", str(tmp_path), "--poll-interval", "0.01", "--release", "r2"]
    run = run_ops(argv, watching, ssm_client, capsys)
    assert run.code == 0, run.err
    assert watching.during is not None and watching.during["shop-prod-web"] == set()
    assert {sent.instance_id for sent in run.ssm.sent} == set(stack.values())
    assert not look_alike & {sent.instance_id for sent in run.ssm.sent}
    assert "shop-prod-web" not in run.out


class SignalAt:
    """Healthy instances; when `purpose` reaches `instance`, this process receives `signum` (as
    from `kill` or Ctrl-C) while the command waits for that answer. Notes what was suspended
    and marked then."""

    def __init__(self, answers: FakeInstances, autoscaling: Any, purpose: str, instance: str, signum: int) -> None:
        self.answers, self.autoscaling = answers, autoscaling
        self.purpose, self.instance, self.signum = purpose, instance, signum
        self.then: tuple[dict[str, set[str]], dict[str, str]] | None = None

    def __call__(self, instance: str, purpose: str, script: str) -> Answer:
        if (purpose, instance) == (self.purpose, self.instance) and self.then is None:
            self.then = (suspended(self.autoscaling), marked(self.autoscaling))
            os.kill(os.getpid(), self.signum)
        return self.answers(instance, purpose, script)


PROD_GROUPS = ("prod-web-abc123", "prod-worker-abc123", "prod-worker-beat-abc123")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_mid_deploy_resumes_groups_and_beat_and_prints_the_state_report(
    stack, groups, ssm_client, capsys, tmp_path, signum
) -> None:
    answers = SignalAt(fake(stack), groups, "activate r2", stack[WORKER1], signum)
    before = signal.getsignal(signal.SIGTERM)
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 128 + signum
    # While it ran, the groups were suspended and marked with the command.
    assert answers.then is not None
    during, marks = answers.then
    assert all(during[group] == set(HELD_PROCESSES) for group in PROD_GROUPS)
    assert sorted(marks) == list(PROD_GROUPS) and all(value.startswith("deploy since ") for value in marks.values())
    # After: nothing suspended, no mark left, Beat resumed, nothing sent after that.
    assert all(not processes for processes in suspended(groups).values()) and marked(groups) == {}
    names = {iid: name for name, iid in stack.items()}
    sent = [(names[iid], purpose) for iid, purpose in run.purposes()]
    assert sent[sent.index((WORKER1, "activate r2")) + 1 :] == [
        (WORKER1, "read current release"),
        (BEAT, "beat resume"),
    ]
    report = run.err.splitlines()
    name = signal.Signals(signum).name
    assert report[0] == f"deploy r2 STOPPED at step 'activate and restart': interrupted by {name}"
    assert f"  Beat: running (resumed on {stack[BEAT]} ({BEAT}) when the command was interrupted)" in report
    assert f"to continue: python -m ops deploy --release r2 --sha256 {R2} --stack prod" in report
    assert f"to roll back: python -m ops rollback --release r1 --sha256 {R1} --stack prod" in report
    assert "Auto Scaling: Launch, ReplaceUnhealthy, AZRebalance, InstanceRefresh resumed on prod-web-abc123" in run.out
    assert signal.getsignal(signal.SIGTERM) is before  # the tool's handlers are gone again


def test_a_signal_mid_rotation_resumes_beat_and_says_what_moved(stack, groups, ssm_client, capsys) -> None:
    answers = SignalAt(fake(stack), groups, "refresh secrets", stack[WEB0], signal.SIGTERM)
    run = rotate(stack, ssm_client, capsys, answers)
    assert run.code == 128 + signal.SIGTERM
    names = {iid: name for name, iid in stack.items()}
    sent = [(names[iid], purpose) for iid, purpose in run.purposes()]
    assert sent[sent.index((WEB0, "refresh secrets")) + 1 :] == [(BEAT, "beat resume")]
    assert run.err.splitlines()[:2] == [
        f"rotate-token STOPPED at step 'move {stack[WEB0]} ({WEB0})': interrupted by SIGTERM",
        f"  on the new token (restarted and checked): {stack[WORKER1]} ({WORKER1}), {stack[BEAT]} ({BEAT})",
    ]
    assert "Beat resumed (the command was interrupted)" in run.out


def crashed_deploy(autoscaling: Any) -> None:
    """What `kill -9` during a deploy leaves: prod's groups suspended and marked, nothing resumed."""
    for group in PROD_GROUPS:
        suspend(autoscaling, group, "deploy")


def test_the_run_after_a_killed_deploy_resumes_the_groups_it_left_suspended_first(
    stack, groups, ssm_client, capsys, tmp_path
) -> None:
    crashed_deploy(groups)
    assert set(suspended(groups)["prod-web-abc123"]) == set(HELD_PROCESSES)
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r1", command="rollback")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    for line, group in zip(lines[:3], PROD_GROUPS, strict=True):
        assert line.startswith(f"Auto Scaling: {group} was left suspended (deploy since 20")
        assert line.endswith(") by a run that did not finish; resumed it")
    assert lines[3].startswith("Auto Scaling: Launch, ReplaceUnhealthy, AZRebalance, InstanceRefresh suspended on")
    assert all(not processes for processes in suspended(groups).values()) and marked(groups) == {}


def test_verify_after_a_killed_deploy_says_which_groups_are_suspended_and_leaves_them(
    stack, groups, ssm_client, capsys
) -> None:
    crashed_deploy(groups)
    run = run_ops(["verify", "--stack", "prod"], fake(stack), ssm_client, capsys)
    assert run.code == 0, run.err
    warnings = [line for line in run.out.splitlines() if line.startswith("WARNING: Auto Scaling")]
    assert [line.split()[3] for line in warnings] == list(PROD_GROUPS)
    assert "the next deploy, rollback or rotate-token resumes it" in warnings[0]
    assert sorted(marked(groups)) == list(PROD_GROUPS)
    assert suspended(groups)["prod-web-abc123"] == set(HELD_PROCESSES)
