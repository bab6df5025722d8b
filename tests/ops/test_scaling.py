"""A deploy holds the stack's Auto Scaling groups still (no launch, no replacement) while it
switches releases, and lets them go however it ends: moto's Auto Scaling on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from ops.scaling import HELD_PROCESSES
from tests.ops.conftest import aws_client
from tests.ops.fake_instances import FakeInstances
from tests.ops.helpers import run_ops
from tests.ops.test_rollout import WORKER1, deploy, fake


def suspended(autoscaling: Any) -> dict[str, set[str]]:
    return {
        group["AutoScalingGroupName"]: {process["ProcessName"] for process in group["SuspendedProcesses"]}
        for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    }


@pytest.fixture
def groups(aws: str) -> Any:
    """prod's three groups and a staging group, empty (their instances are the tests' own)."""
    ec2, autoscaling = aws_client("ec2"), aws_client("autoscaling")
    template = ec2.create_launch_template(
        LaunchTemplateName="t", LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    for stack, kind in (("prod", "web"), ("prod", "worker"), ("prod", "worker-beat"), ("staging", "web")):
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"{stack}-{kind}-abc123",
            LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=0,
            AvailabilityZones=["eu-west-1a"],
            Tags=[{"Key": "Stack", "Value": stack, "PropagateAtLaunch": True}],
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
