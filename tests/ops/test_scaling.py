"""A deploy holds the stack's Auto Scaling groups still (no launch, no replacement) while it
switches releases, and lets them go however it ends: moto's Auto Scaling on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from ops.scaling import HELD_PROCESSES
from tests.ops.conftest import aws_client, launch
from tests.ops.fake_instances import FakeInstances
from tests.ops.helpers import run_ops
from tests.ops.test_rollout import WORKER1, deploy, fake


def suspended(autoscaling: Any) -> dict[str, set[str]]:
    return {
        group["AutoScalingGroupName"]: {process["ProcessName"] for process in group["SuspendedProcesses"]}
        for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    }


# Another project's prod in the same account: its own Stack=prod tag, its own Project tag.
LOOK_ALIKE = "shop"


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
