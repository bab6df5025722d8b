"""The stack's Auto Scaling groups held still during a deploy or rollback: no instance is
launched or replaced while releases switch, so none boots into a half-deployed stack.

A held group carries the SUSPENDED_BY tag (which command, since when) until it is resumed: a
run that was killed outright (kill -9, a lost laptop) cannot resume anything, and the next run
finds the tag and resumes the group before it does anything else."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.inventory import stack_filters

# What would add or replace instances; scale-in, health checks and alarms keep running.
HELD_PROCESSES = ("Launch", "ReplaceUnhealthy", "AZRebalance", "InstanceRefresh")
# On a group the tool suspended: "<command> since <UTC time>". Removed when it resumes the group.
SUSPENDED_BY = "ops-suspended-by"

Print = Callable[[str], None]


def stack_groups(autoscaling: Any, project: str, stack: str) -> list[dict[str, Any]]:
    """The Auto Scaling groups tagged Project=<project>, Stack=<stack>, by name."""
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(Filters=stack_filters(project, stack))
    groups = [group for page in pages for group in page["AutoScalingGroups"]]
    return sorted(groups, key=lambda group: str(group["AutoScalingGroupName"]))


def _mark(autoscaling: Any, group: str, value: str | None) -> None:
    tag = {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": SUSPENDED_BY}
    if value is None:
        autoscaling.delete_tags(Tags=[tag])
    else:
        autoscaling.create_or_update_tags(Tags=[tag | {"Value": value, "PropagateAtLaunch": False}])


def suspend(autoscaling: Any, group: str, command: str) -> None:
    """Marked first: a kill between the two calls leaves a marked group, never an unmarked
    suspended one."""
    _mark(autoscaling, group, f"{command} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    autoscaling.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=list(HELD_PROCESSES))


def resume(autoscaling: Any, group: str) -> None:
    autoscaling.resume_processes(AutoScalingGroupName=group, ScalingProcesses=list(HELD_PROCESSES))
    _mark(autoscaling, group, None)


def recover_left_suspended(autoscaling: Any, groups: list[dict[str, Any]], out: Print, *, resume_them: bool) -> None:
    """Before anything else: groups an earlier run left suspended (the SUSPENDED_BY tag) are
    resumed (resume_them) or named, with the commands that resume them."""
    for group in groups:
        tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
        if SUSPENDED_BY not in tags:
            continue
        name, by = str(group["AutoScalingGroupName"]), tags[SUSPENDED_BY]
        if resume_them:
            resume(autoscaling, name)
            out(f"Auto Scaling: {name} was left suspended ({by}) by a run that did not finish; resumed it")
        else:
            out(
                f"WARNING: Auto Scaling {name} was left suspended ({by}) by a run that did not finish: "
                "it launches and replaces nothing; the next deploy, rollback or rotate-token resumes it"
            )


@contextmanager
def scaling_held(autoscaling: Any, project: str, stack: str, out: Print, command: str) -> Iterator[list[str]]:
    """Suspends HELD_PROCESSES on the stack's groups, and resumes them however the block ends
    (a failure, an exception, a stopping signal: see ops/interrupt.py), so the groups keep
    healing while the operator continues or rolls back a stopped deploy."""
    groups = [str(group["AutoScalingGroupName"]) for group in stack_groups(autoscaling, project, stack)]
    held: list[str] = []
    try:
        for group in groups:
            held.append(group)  # before the calls: a signal between them still resumes it
            suspend(autoscaling, group, command)
        if held:
            out(f"Auto Scaling: {', '.join(HELD_PROCESSES)} suspended on {', '.join(held)}")
        yield held
    finally:
        resumed = []
        for group in held:
            try:
                resume(autoscaling, group)
                resumed.append(group)
            except (BotoCoreError, ClientError) as error:  # the others are still resumed
                out(f"WARNING: Auto Scaling {group} could not be resumed ({error}): the next run resumes it")
        if resumed:
            out(f"Auto Scaling: {', '.join(HELD_PROCESSES)} resumed on {', '.join(resumed)}")
