"""The stack's instances, found by the tags docs/machine-layout.md defines (never by instance
ids passed around), so what the tool touches is what the program tagged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError, UsageError

BEAT_TAG = "celery-beat"
ROLES = ("web", "worker")


@dataclass(frozen=True)
class Instance:
    instance_id: str
    name: str
    role: str
    beat: bool

    @property
    def label(self) -> str:
        return f"{self.instance_id} ({self.name})"


def instance_from_description(description: dict[str, Any]) -> Instance:
    tags = {tag["Key"]: tag["Value"] for tag in description.get("Tags", [])}
    return Instance(
        instance_id=description["InstanceId"],
        name=tags.get("Name", description["InstanceId"]),
        role=tags.get("Role", ""),
        beat=tags.get(BEAT_TAG) == "true",
    )


def discover(ec2: Any, stack: str) -> list[Instance]:
    """Running instances tagged Stack=<stack> with a known Role, web first, then by name.
    Stopped or terminating instances are not part of the stack an operator can act on."""
    filters = [
        {"Name": "tag:Stack", "Values": [stack]},
        {"Name": "tag:Role", "Values": list(ROLES)},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    instances = [
        instance_from_description(description)
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for description in reservation["Instances"]
    ]
    if not instances:
        raise UsageError(f"--stack: no running instance is tagged Stack={stack} (check the stack name and region)")
    return sorted(instances, key=lambda i: (ROLES.index(i.role), i.beat, i.name))


def beat_instance(instances: list[Instance]) -> Instance:
    """The one instance tagged celery-beat=true. Zero or several is refused: two Beats fire
    every scheduled task twice, none means the schedule silently stops."""
    tagged = [i for i in instances if i.beat]
    if len(tagged) != 1:
        found = ", ".join(i.label for i in tagged) or "none"
        raise OpsError(f"expected exactly one running instance tagged {BEAT_TAG}=true, found {len(tagged)}: {found}")
    if tagged[0].role != "worker":
        raise OpsError(f"{tagged[0].label} carries {BEAT_TAG}=true but its Role is {tagged[0].role!r}, not 'worker'")
    return tagged[0]


def by_role(instances: list[Instance], role: str) -> list[Instance]:
    return [i for i in instances if i.role == role]
