"""The live release parameter under Pulumi mocks: created once from app.release, then left to
the ops tool (ignore_changes on its value), exported for it, readable by the instances."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime.mocks import MockMonitor

from components.live_release import LiveRelease, LiveReleaseArgs
from offline_render.program import StackRender, render_stack
from tests.conftest import named, of_type

PARAMETER_TYPE = "aws:ssm/parameter:Parameter"


PINNED = f"2026.12.01-1@sha256:{'0a' * 32}"
# The tests that read pinned_run run on one xdist worker (--dist loadgroup): one run for both.
shares_pinned_run = pytest.mark.xdist_group("live-release-pinned")


@pytest.fixture(scope="module")
def pinned_run() -> tuple[StackRender, dict[str, list[str]]]:
    """A fresh run of prod with a pinned app.release (not prod's), and each resource's name ->
    the ignoreChanges the program registered it with (the mocks' own arguments do not carry
    resource options)."""
    seen: dict[str, list[str]] = {}
    register = MockMonitor.RegisterResource

    def recording(self: MockMonitor, request: Any) -> Any:
        seen[request.name] = list(request.ignoreChanges)
        return register(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MockMonitor, "RegisterResource", recording)
        return render_stack("prod", {"app.release": PINNED}), seen


def test_release_parameter_is_a_plain_string_seeded_from_app_release(prod):
    parameter = named(prod, PARAMETER_TYPE, "prod-live-release")
    assert parameter == {
        "name": "/django-stack/prod/release",
        "type": "String",
        "insecureValue": "2026.11.25-1",  # not `value`, which the provider always marks secret
        "description": "The live app release (written by python -m ops deploy/rollback; read at boot)",
        "tags": {"Project": "django-stack", "Stack": "prod"},
    }


@shares_pinned_run
def test_release_parameter_value_is_left_to_the_ops_tool(pinned_run):
    _, ignored_changes = pinned_run
    assert ignored_changes["prod-live-release"] == ["insecureValue"]
    assert ignored_changes["prod-redis-auth-token"] == []  # the program keeps owning its secrets


def test_release_parameter_name_is_exported_for_the_ops_tool(prod):
    assert prod.outputs["releaseParameter"] == "/django-stack/prod/release"
    assert "release" not in prod.outputs  # the config's release is only the first live one


def test_live_release_alone_creates_the_named_string_parameter(build_alone):
    args = LiveReleaseArgs(parameter_name="/p/t/release", initial_release="r1", tags={"Stack": "t"})
    resources = build_alone(lambda: LiveRelease("t", args))
    (parameter,) = of_type(resources, PARAMETER_TYPE)
    assert (parameter.inputs["name"], parameter.inputs["type"], parameter.inputs["insecureValue"]) == (
        "/p/t/release",
        "String",
        "r1",
    )


@shares_pinned_run
def test_a_pinned_app_release_seeds_the_parameter_with_its_artifacts_digest(pinned_run):
    render, _ = pinned_run
    assert named(render, PARAMETER_TYPE, "prod-live-release")["insecureValue"] == PINNED
