"""python -m ops drill failover: ElastiCache's TestFailover on the stack's replication group, then
how long until the group has a new primary and the stack works again: every instance's verify
checks pass, among them the web instances' healthcheck task round-trip, which needs a worker to
consume (docs/failover.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ops.errors import OpsError, UsageError
from ops.executor import Executor
from ops.inventory import Instance
from ops.verify import CheckRow, VerifyOptions, table_row, verify_instance
from userdata.layout import PROJECT_TAG, STACK_TAG

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicationGroup:
    group_id: str
    node_group_id: str
    primary: str  # the cache cluster (node) in the primary role


def primary_of(description: dict[str, Any]) -> ReplicationGroup:
    (node_group, *_) = description["NodeGroups"]
    primaries = [m["CacheClusterId"] for m in node_group["NodeGroupMembers"] if m.get("CurrentRole") == "primary"]
    return ReplicationGroup(description["ReplicationGroupId"], node_group["NodeGroupId"], ",".join(primaries))


def find_replication_group(elasticache: Any, project: str, stack: str) -> dict[str, Any]:
    """The one replication group tagged Project=<project>, Stack=<stack>."""
    wanted = {PROJECT_TAG: project, STACK_TAG: stack}
    found: list[dict[str, Any]] = []
    for page in elasticache.get_paginator("describe_replication_groups").paginate():
        for described in page["ReplicationGroups"]:
            tags = elasticache.list_tags_for_resource(ResourceName=described["ARN"])["TagList"]
            if wanted.items() <= {tag["Key"]: tag["Value"] for tag in tags}.items():
                found.append(described)
    if len(found) != 1:
        names = ", ".join(g["ReplicationGroupId"] for g in found) or "none"
        raise UsageError(
            f"--stack: expected one ElastiCache replication group tagged {PROJECT_TAG}={project}, "
            f"{STACK_TAG}={stack}, found {len(found)}: {names}"
        )
    group = found[0]
    if group.get("AutomaticFailover") not in ("enabled", "enabling"):
        raise UsageError(
            f"--stack: replication group {group['ReplicationGroupId']} has no automatic failover "
            "(a stack with redis.replicas: 0 has no replica to fail over to)"
        )
    return group


@dataclass
class FailoverDrill:
    elasticache: Any
    executor: Executor
    instances: list[Instance]
    verify_options: VerifyOptions
    out: Callable[[str], None]
    poll_interval: float
    timeout: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    last_rows: list[CheckRow] = field(default_factory=list)  # the last verify round, printed at the end

    def run(self, project: str, stack: str) -> None:
        before = primary_of(find_replication_group(self.elasticache, project, stack))
        self.out(
            f"replication group {before.group_id}: primary {before.primary}; TestFailover on {before.node_group_id}"
        )
        started = self.clock()
        self.elasticache.test_failover(ReplicationGroupId=before.group_id, NodeGroupId=before.node_group_id)
        after = self._wait(lambda: self._new_primary(before), "a new primary")
        self.out(f"primary {after.primary} after {self.clock() - started:.1f} s")
        try:
            self._wait(self._checks_passing, "every verify check passing")
        finally:
            for row in self.last_rows:
                self.out(table_row(row))
        self.out(
            f"workers consuming again (healthcheck round-trip and every check ok) {self.clock() - started:.1f} s "
            "after TestFailover"
        )

    def _new_primary(self, before: ReplicationGroup) -> ReplicationGroup | None:
        (description,) = self.elasticache.describe_replication_groups(ReplicationGroupId=before.group_id)[
            "ReplicationGroups"
        ]
        now = primary_of(description)
        moved = now.primary and now.primary != before.primary and description["Status"] == "available"
        return now if moved else None

    def _checks_passing(self) -> bool | None:
        self.last_rows = [
            row
            for instance in self.instances
            for row in verify_instance(self.executor, instance, self.verify_options, beat_running=True)
        ]
        return True if all(row.ok for row in self.last_rows) else None

    def _wait(self, probe: Callable[[], T | None], what: str) -> T:
        deadline = self.clock() + self.timeout
        while True:
            result = probe()
            if result is not None:
                return result
            if self.clock() >= deadline:
                raise OpsError(f"failover drill: no {what} within --drill-timeout {self.timeout:.0f} s")
            self.sleep(self.poll_interval)
