"""Every stack file renders under the mocks and passes every policy; staging is prod, smaller."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from offline_render.fake_aws import RecordedResource
from offline_render.program import StackRender, available_stacks
from policy import offline, rules
from policy.offline import violations
from tests import REPO_ROOT
from tests.conftest import rendered

# What staging may change: sizes and counts. Anything else (security, app, schedules) is prod's.
SIZE_AND_COUNT_KEYS = {
    "django-stack:network.natGateways",
    "django-stack:redis.nodeType",
    "django-stack:redis.replicas",
    "django-stack:redis.multiAz",
    "django-stack:redis.snapshotRetentionDays",
    "django-stack:web.minSize",
    "django-stack:web.desiredCapacity",
    "django-stack:web.maxSize",
    "django-stack:web.instanceType",
    "django-stack:web.gunicornWorkers",
    "django-stack:worker.minSize",
    "django-stack:worker.desiredCapacity",
    "django-stack:worker.maxSize",
    "django-stack:worker.instanceType",
    # Not a size, but a stack meant to be torn down: prod alone refuses to delete its data.
    "django-stack:security.protect",
}


def flat_config(stack: str) -> dict[str, Any]:
    """The stack file's config as dotted paths (`django-stack:redis.replicas`) to leaf values."""
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        else:
            flat[prefix] = value

    for key, value in config.items():
        walk(key, value)
    return flat


def replication_group(render: StackRender) -> dict[str, Any]:
    (group,) = render.of_type(rules.REPLICATION_GROUP)
    return group.inputs


def test_there_is_a_staging_stack_next_to_prod() -> None:
    assert {"prod", "staging"} <= set(available_stacks())


@pytest.mark.parametrize("stack", available_stacks())
def test_stack_renders_and_passes_every_policy(stack: str) -> None:
    render = rendered(stack)
    assert render.instances, f"{stack} has no instances"
    assert violations(render) == []


def test_staging_differs_from_prod_only_in_sizes_and_counts() -> None:
    prod, staging = flat_config("prod"), flat_config("staging")
    assert set(staging) == set(prod), "staging sets other keys than prod"
    changed = {key for key in prod if prod[key] != staging[key]}
    assert changed - SIZE_AND_COUNT_KEYS == set()
    assert changed, "staging is prod: nothing smaller"


def test_staging_runs_a_single_redis_node_without_multi_az() -> None:
    group = replication_group(rendered("staging"))
    assert group["numCacheClusters"] == 1
    assert group["multiAzEnabled"] is False
    assert group["automaticFailoverEnabled"] is False


def test_prod_runs_redis_with_a_replica_in_multi_az(prod: StackRender) -> None:
    group = replication_group(prod)
    assert group["numCacheClusters"] >= 2
    assert group["multiAzEnabled"] is True
    assert group["automaticFailoverEnabled"] is True


def test_offline_check_passes_every_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert offline.main([]) == 0
    out = capsys.readouterr().out
    assert all(f"stack {stack}: " in out for stack in available_stacks()) and "0 violations" in out


def test_offline_check_fails_on_a_violation(
    prod: StackRender, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def public(resource: RecordedResource) -> RecordedResource:
        if resource.type_ != rules.LAUNCH_TEMPLATE or resource.name != "prod-web":
            return resource
        (interface,) = resource.inputs["networkInterfaces"]
        exposed = {**interface, "associatePublicIpAddress": "true"}
        return RecordedResource(resource.type_, resource.name, {**resource.inputs, "networkInterfaces": [exposed]})

    exposed = StackRender(prod.stack, prod.instances, [public(r) for r in prod.resources])
    monkeypatch.setattr(offline, "render_stack", lambda stack: exposed)
    assert offline.main(["--stack", "prod"]) == 1
    assert "prod-web: instance-hardened: networkInterfaces[].associatePublicIpAddress" in capsys.readouterr().out
