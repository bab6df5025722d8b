"""The stack's Auto Scaling groups held still during a deploy or rollback: no instance is
launched or replaced while releases switch, so none boots into a half-deployed stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ops.inventory import stack_filters

# What would add or replace instances; scale-in, health checks and alarms keep running.
HELD_PROCESSES = ("Launch", "ReplaceUnhealthy", "AZRebalance", "InstanceRefresh")


def stack_groups(autoscaling: Any, project: str, stack: str) -> list[str]:
    """The names of the Auto Scaling groups tagged Project=<project>, Stack=<stack>."""
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(Filters=stack_filters(project, stack))
    return sorted(group["AutoScalingGroupName"] for page in pages for group in page["AutoScalingGroups"])


@contextmanager
def scaling_held(autoscaling: Any, project: str, stack: str, out: Callable[[str], None]) -> Iterator[list[str]]:
    """Suspends HELD_PROCESSES on the stack's groups, and resumes them however the block ends,
    so the groups keep healing while the operator continues or rolls back a stopped deploy."""
    groups = stack_groups(autoscaling, project, stack)
    held: list[str] = []
    try:
        for group in groups:
            autoscaling.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=list(HELD_PROCESSES))
            held.append(group)
        if held:
            out(f"Auto Scaling: {', '.join(HELD_PROCESSES)} suspended on {', '.join(held)}")
        yield held
    finally:
        for group in held:
            autoscaling.resume_processes(AutoScalingGroupName=group, ScalingProcesses=list(HELD_PROCESSES))
        if held:
            out(f"Auto Scaling: {', '.join(HELD_PROCESSES)} resumed on {', '.join(held)}")
