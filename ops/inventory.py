"""The stack's instances, found by the tags the machine contract (userdata/layout.py) defines (never by instance
ids passed around), so what the tool touches is what the program tagged: this project's stack, never another
project's stack of the same name in the account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError, UsageError
from userdata.layout import BEAT_TAG, BEAT_TAG_VALUE, NAME_TAG, PROJECT_TAG, ROLE_TAG, ROLES, STACK_TAG, WORKER_ROLE


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
        name=tags.get(NAME_TAG, description["InstanceId"]),
        role=tags.get(ROLE_TAG, ""),
        beat=tags.get(BEAT_TAG) == BEAT_TAG_VALUE,
    )


def stack_filters(project: str, stack: str) -> list[dict[str, Any]]:
    """The stack's own tags, as EC2's and Auto Scaling's describe calls filter (every filter must match)."""
    return [{"Name": f"tag:{PROJECT_TAG}", "Values": [project]}, {"Name": f"tag:{STACK_TAG}", "Values": [stack]}]


def discover(ec2: Any, project: str, stack: str) -> list[Instance]:
    """Running instances tagged Project=<project>, Stack=<stack> with a known Role, web first, then
    by name. Stopped or terminating instances are not part of the stack an operator can act on."""
    filters = [
        *stack_filters(project, stack),
        {"Name": f"tag:{ROLE_TAG}", "Values": list(ROLES)},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    instances = [
        instance_from_description(description)
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for description in reservation["Instances"]
    ]
    if not instances:
        raise UsageError(
            f"--stack: no running instance is tagged {PROJECT_TAG}={project}, {STACK_TAG}={stack} "
            "(check the stack name, the project and the region)"
        )
    return sorted(instances, key=lambda i: (ROLES.index(i.role), i.beat, i.name))


def beat_instance(instances: list[Instance]) -> Instance:
    """The one instance tagged celery-beat=true. Zero or several is refused: two Beats fire
    every scheduled task twice, none means the schedule silently stops."""
    tagged = [i for i in instances if i.beat]
    if len(tagged) != 1:
        found = ", ".join(i.label for i in tagged) or "none"
        raise OpsError(f"expected exactly one running instance tagged {BEAT_TAG}=true, found {len(tagged)}: {found}")
    if tagged[0].role != WORKER_ROLE:
        raise OpsError(
            f"{tagged[0].label} carries {BEAT_TAG}={BEAT_TAG_VALUE} but its {ROLE_TAG} is {tagged[0].role!r}, "
            f"not {WORKER_ROLE!r}"
        )
    return tagged[0]


def by_role(instances: list[Instance], role: str) -> list[Instance]:
    return [i for i in instances if i.role == role]
