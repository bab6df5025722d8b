"""Machine kinds (config/kinds.py): one MachineGroup per kind, built from one value. Existing stacks
keep every resource (same URN, or the old one as an alias), and a fourth kind is one more entry."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import program
from config.kinds import machine_kinds, worker_kind
from offline_render.fake_aws import AUTOSCALING_GROUP_TYPE, LAUNCH_TEMPLATE_TYPE
from offline_render.program import render_stack
from tests.conftest import rendered
from userdata.layout import worker_unit
from userdata.render import decode_user_data, enabled_units

URNS = Path(__file__).resolve().parent / "urns"


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_resource_of_the_existing_stacks_keeps_its_urn_or_carries_it_as_an_alias(stack):
    # tests/urns/<stack>.txt: every URN of the stack before machine kinds had their own component.
    before = set((URNS / f"{stack}.txt").read_text().split())
    urns = rendered(stack).urns
    adopted = set(urns) | {alias for aliases in urns.values() for alias in aliases}
    assert before - adopted == set()
    # What is new (neither an old URN nor aliased to one) is the kinds' components alone.
    assert sorted(urn for urn, aliases in urns.items() if urn not in before and not before & set(aliases)) == [
        f"djangostack:fleet:Fleet$djangostack:fleet:MachineGroup::{stack}-{kind}"
        for kind in ("web", "worker", "worker-beat")
    ]


def with_a_long_queue_pool(settings: Any) -> tuple[Any, ...]:
    """A fourth kind: its own group for the `long` queue, which the worker kind no longer takes."""
    web, worker, *rest = machine_kinds(settings)
    pool = dataclasses.replace(
        worker_kind(settings),
        name="worker-long",
        queues=("long",),
        min_size=0,
        desired_capacity=2,
        max_size=6,
        instance_type="c7i.large",
        scales_on_backlog=False,
        termination_hold_seconds=3600,
    )
    return (web, dataclasses.replace(worker, queues=("default",)), *rest, pool)


def test_a_fourth_kind_is_one_entry_and_gets_its_own_group_role_hooks_and_user_data(monkeypatch):
    monkeypatch.setattr(program, "machine_kinds", with_a_long_queue_pool)
    render = render_stack("prod")
    named = {(r.type_, r.name): r for r in render.resources}
    template = named[(LAUNCH_TEMPLATE_TYPE, "prod-worker-long")]
    group = named[(AUTOSCALING_GROUP_TYPE, "prod-worker-long")]
    assert template.parent == group.parent == "djangostack:fleet:MachineGroup::prod-worker-long"
    assert template.inputs["instanceType"] == "c7i.large"
    assert template.inputs["iamInstanceProfile"]["name"] == "prod-worker-long-profile"
    assert (group.inputs["minSize"], group.inputs["desiredCapacity"], group.inputs["maxSize"]) == (0, 2, 6)
    assert {t["key"]: t["value"] for t in group.inputs["tags"]} == {
        "Project": "django-stack",
        "Stack": "prod",
        "Role": "worker",
        "Name": "prod-worker-long",
    }
    hook = named[("aws:autoscaling/lifecycleHook:LifecycleHook", "prod-worker-long-warm-stop")]
    assert hook.inputs["heartbeatTimeout"] == 3600
    policies = {r.name: r.inputs["role"] for r in render.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies["prod-worker-long-complete-termination"] == policies["prod-worker-long-report-failed-boot"]
    assert named[("aws:iam/role:Role", "prod-worker-long-role")].parent == "djangostack:access:InstanceAccess::prod"
    # Its user-data runs the long queue's worker alone; the worker kind's no longer does.
    kinds = {kind.name: kind for kind in render.kinds}
    assert worker_unit("long") in enabled_units(kinds["worker-long"].user_data)
    assert worker_unit("default") not in enabled_units(kinds["worker-long"].user_data)
    assert worker_unit("long") not in enabled_units(kinds["worker"].user_data)
    assert decode_user_data(template.inputs["userData"]) == kinds["worker-long"].user_data
    # Nothing of the other kinds moved.
    assert named[(LAUNCH_TEMPLATE_TYPE, "prod-worker")].parent == "djangostack:fleet:MachineGroup::prod-worker"
