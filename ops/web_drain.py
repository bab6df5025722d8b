"""A web instance leaves the load balancer before its units restart, and comes back only once
the load balancer finds it healthy: no request reaches a gunicorn that is stopping or starting.

  EnterStandby (desired capacity decremented: nothing is launched in its place) -> wait until
  the instance is in Standby and no target group still has it registered or draining (Auto
  Scaling deregisters it; the load balancer lets requests in flight finish for the target
  group's deregistration delay) -> restart -> ExitStandby -> wait until InService and healthy
  in every target group.

AWS refuses two things this works around:
- EnterStandby with a decrement that would take the desired capacity below the group's minimum
  (prod's web group runs at its minimum): the minimum is lowered by one for the restart.
- ExitStandby while the group's Launch process is suspended (a deploy suspends it): Launch is
  resumed for the return, then suspended again.
The group carries the IN_STANDBY tag (instance, the minimum to restore) meanwhile, so a run
killed outright is cleaned up by the next one (recover_left_in_standby). However the restart
ends (failure, a stopping signal), the instance is returned to service; the waits are bounded
by the target groups' own settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import OpsError
from ops.inventory import Instance
from userdata.layout import WEB_ROLE

Print = Callable[[str], None]

# On the web group while one of its instances is out: "<instance id> min <minimum to restore>",
# or "<instance id>" when the minimum was left alone.
IN_STANDBY = "ops-standby"
# Beyond the target groups' own timings: Auto Scaling's and the load balancer's API catching up.
WAIT_MARGIN_SECONDS = 60
# Target states in which the load balancer may still send the target a request.
ROUTED_STATES = ("initial", "healthy", "unhealthy", "draining")


def _tag(group: str, value: str | None) -> dict[str, Any]:
    tag: dict[str, Any] = {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": IN_STANDBY}
    return tag if value is None else tag | {"Value": value, "PropagateAtLaunch": False}


@dataclass
class WebDrain:
    autoscaling: Any
    elbv2: Any
    out: Print
    poll_interval: float = 2.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @contextmanager
    def around_restart(self, instance: Instance) -> Iterator[None]:
        """Web instances: out of the load balancer within the block. Workers serve no request."""
        if instance.role != WEB_ROLE:
            yield
            return
        with self.out_of_service(instance):
            yield

    @contextmanager
    def out_of_service(self, instance: Instance) -> Iterator[None]:
        """Within the block the instance receives no request from the load balancer."""
        group = self._group_of(instance)
        if group is None or not group["TargetGroupARNs"]:
            self.out(f"{instance.label}: in no load balancer target group; restarting in place")
            yield
            return
        name, target_groups = group["AutoScalingGroupName"], group["TargetGroupARNs"]
        lowered = group["DesiredCapacity"] - 1 < group["MinSize"]
        self.autoscaling.create_or_update_tags(
            Tags=[_tag(name, f"{instance.instance_id} min {group['MinSize']}" if lowered else instance.instance_id)]
        )
        minimum = group["MinSize"] if lowered else None
        returned = False
        try:
            if lowered:
                self.autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=group["MinSize"] - 1)
            self.out(f"{instance.label}: leaving the load balancer (Auto Scaling Standby in {name}) ...")
            self.autoscaling.enter_standby(
                InstanceIds=[instance.instance_id], AutoScalingGroupName=name, ShouldDecrementDesiredCapacity=True
            )
            self._wait_lifecycle(instance, "Standby")
            self._wait_targets(instance, target_groups, drained=True)
            self.out(f"{instance.label}: out of the load balancer; no request in flight")
            yield
            self.out(f"{instance.label}: back into the load balancer ...")
            return_to_service(self.autoscaling, name, instance.instance_id, minimum)
            returned = True
        except BaseException:
            # Back in service whatever stopped the restart (not waiting for its health); the
            # original error stays the one raised.
            if not returned:
                try:
                    return_to_service(self.autoscaling, name, instance.instance_id, minimum)
                    self.out(f"{instance.label}: back in service in {name} (its health not waited for)")
                except (OpsError, BotoCoreError, ClientError) as error:
                    self.out(f"WARNING: {instance.label} could not leave Standby ({error}); the next run returns it")
            raise
        self._wait_lifecycle(instance, "InService")
        self._wait_targets(instance, target_groups, drained=False)
        self.out(f"{instance.label}: healthy in the load balancer again")

    def _group_of(self, instance: Instance) -> dict[str, Any] | None:
        found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance.instance_id])
        if not found["AutoScalingInstances"]:
            return None
        name = found["AutoScalingInstances"][0]["AutoScalingGroupName"]
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return dict(groups[0]) if groups else None

    def _wait_lifecycle(self, instance: Instance, state: str) -> None:
        def reached() -> str | None:
            found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance.instance_id])
            current = found["AutoScalingInstances"][0]["LifecycleState"] if found["AutoScalingInstances"] else "gone"
            return None if current == state else f"{instance.label} is {current}, not {state}"

        self._until(reached, WAIT_MARGIN_SECONDS)

    def _wait_targets(self, instance: Instance, target_groups: list[str], drained: bool) -> None:
        """drained: until no target group routes to it (deregistration delay included);
        else: until every target group finds it healthy (its health checks passing)."""
        bound = WAIT_MARGIN_SECONDS + max(self._target_group_seconds(arn, drained) for arn in target_groups)

        def reached() -> str | None:
            for arn in target_groups:
                (health,) = self.elbv2.describe_target_health(
                    TargetGroupArn=arn, Targets=[{"Id": instance.instance_id}]
                )["TargetHealthDescriptions"]
                state = health["TargetHealth"]["State"]
                if (state in ROUTED_STATES) if drained else (state != "healthy"):
                    reason = health["TargetHealth"].get("Description") or health["TargetHealth"].get("Reason", "")
                    return f"{instance.label} is {state} in {arn.rpartition(':')[2]} {reason}".rstrip()
            return None

        self._until(reached, bound)

    def _target_group_seconds(self, arn: str, drained: bool) -> float:
        """How long the load balancer itself may take: the deregistration delay, or the health
        checks a target needs to pass."""
        if drained:
            attributes = self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
            values = {item["Key"]: item["Value"] for item in attributes}
            return float(values.get("deregistration_delay.timeout_seconds", 300))
        (group,) = self.elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
        return float(group["HealthCheckIntervalSeconds"] * group["HealthyThresholdCount"])

    def _until(self, pending: Callable[[], str | None], bound: float) -> None:
        deadline = self.clock() + bound
        while (waiting := pending()) is not None:
            if self.clock() >= deadline:
                raise OpsError(f"after {bound:g} s: {waiting}")
            self.sleep(self.poll_interval)


def return_to_service(autoscaling: Any, group: str, instance_id: str, minimum: int | None) -> None:
    """ExitStandby (Launch resumed for it when suspended: AWS refuses it otherwise), the group's
    minimum restored, the IN_STANDBY tag removed."""
    (described,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    launch_held = any(process["ProcessName"] == "Launch" for process in described["SuspendedProcesses"])
    standing_by = [
        i for i in described["Instances"] if i["InstanceId"] == instance_id and i["LifecycleState"] == "Standby"
    ]
    if standing_by:
        if launch_held:
            autoscaling.resume_processes(AutoScalingGroupName=group, ScalingProcesses=["Launch"])
        try:
            autoscaling.exit_standby(InstanceIds=[instance_id], AutoScalingGroupName=group)
        finally:
            if launch_held:
                autoscaling.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=["Launch"])
    if minimum is not None:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=minimum)
    autoscaling.delete_tags(Tags=[_tag(group, None)])


def recover_left_in_standby(autoscaling: Any, groups: list[dict[str, Any]], out: Print, *, resume_them: bool) -> None:
    """Instances a killed run left in Standby (the IN_STANDBY tag): returned to service, or named."""
    for group in groups:
        tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
        if IN_STANDBY not in tags:
            continue
        instance_id, _, minimum = tags[IN_STANDBY].partition(" min ")
        name = group["AutoScalingGroupName"]
        if resume_them:
            return_to_service(autoscaling, name, instance_id, int(minimum) if minimum else None)
            out(f"Auto Scaling: {instance_id} was left in Standby in {name} by a run that did not finish; returned it")
        else:
            out(
                f"WARNING: {instance_id} was left in Standby in {name} by a run that did not finish: the load "
                "balancer sends it nothing; the next deploy, rollback or rotate-token returns it"
            )
