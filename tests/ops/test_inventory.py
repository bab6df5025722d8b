"""Instances are found by the program's tags, over the EC2 API as moto answers it."""

from __future__ import annotations

import pytest

from ops.errors import OpsError, UsageError
from ops.inventory import beat_instance, discover
from tests.ops.conftest import aws_client, launch


def test_discovery_finds_the_stacks_running_instances_by_their_tags(stack: dict[str, str]) -> None:
    found = discover(aws_client("ec2"), "django-stack", "prod")
    assert [(i.instance_id, i.name, i.role, i.beat) for i in found] == [
        (stack["prod-web-0"], "prod-web-0", "web", False),
        (stack["prod-web-1"], "prod-web-1", "web", False),
        (stack["prod-worker-0"], "prod-worker-0", "worker", False),
        (stack["prod-worker-beat-0"], "prod-worker-beat-0", "worker", True),  # restarted last
    ]


def test_discovery_ignores_other_stacks_and_instances_not_running(
    stack: dict[str, str], program_tags: list[dict[str, str]]
) -> None:
    worker_tags = next(t for t in program_tags if t["Name"] == "prod-worker-0")
    launch(worker_tags | {"Stack": "staging", "Name": "staging-worker-1"})
    launch(worker_tags | {"Name": "prod-worker-2"}, state="stopped")
    launch(worker_tags | {"Name": "prod-worker-3"}, state="terminated")
    assert {i.name for i in discover(aws_client("ec2"), "django-stack", "prod")} == set(stack)


def test_discovery_ignores_another_projects_stack_of_the_same_name(
    stack: dict[str, str], program_tags: list[dict[str, str]]
) -> None:
    for tags in program_tags:
        launch(tags | {"Project": "shop"})
    found = discover(aws_client("ec2"), "django-stack", "prod")
    assert sorted(i.instance_id for i in found) == sorted(stack.values())
    assert len(discover(aws_client("ec2"), "shop", "prod")) == len(program_tags)


def test_an_unknown_stack_is_refused_naming_the_stack_argument(stack: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=r"^--stack: no running instance is tagged Project=django-stack, Stack=nope"):
        discover(aws_client("ec2"), "django-stack", "nope")


def test_the_beat_instance_is_the_one_tagged_celery_beat(stack: dict[str, str]) -> None:
    assert beat_instance(discover(aws_client("ec2"), "django-stack", "prod")).instance_id == stack["prod-worker-beat-0"]


def test_a_second_beat_tag_is_refused_naming_both(stack: dict[str, str], program_tags: list[dict[str, str]]) -> None:
    beat_tags = next(t for t in program_tags if t.get("celery-beat") == "true")
    second = launch(beat_tags | {"Name": "prod-worker-beat-2"})
    with pytest.raises(OpsError, match="exactly one .* found 2: .*prod-worker-beat-0.*" + second):
        beat_instance(discover(aws_client("ec2"), "django-stack", "prod"))


def test_no_beat_tag_is_refused(aws: str, program_tags: list[dict[str, str]]) -> None:
    for tags in program_tags:
        launch({k: v for k, v in tags.items() if k != "celery-beat"})
    with pytest.raises(OpsError, match="exactly one running instance tagged celery-beat=true, found 0: none"):
        beat_instance(discover(aws_client("ec2"), "django-stack", "prod"))
