"""Runs the real Pulumi program (__main__.py) for a stack under the fake AWS, with the stack
file's config (plus overrides), and collects what it would create: every resource with its
inputs, and each instance's user-data as cloud-init would read it."""

from __future__ import annotations

import asyncio
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from offline_render.fake_aws import INSTANCE_TYPE, RecordedResource, RecordingMocks
from offline_render.overrides import PROJECT, apply_overrides
from userdata.layout import ROLE_TAG
from userdata.render import decode_user_data

# Where Pulumi.yaml, the stack files and __main__.py live.
PROGRAM_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RenderedInstance:
    logical_name: str
    role: str
    tags: dict[str, str]
    user_data: str


@dataclass(frozen=True)
class StackRender:
    stack: str
    instances: list[RenderedInstance]
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type_ == type_]


def stack_file_config(stack: str) -> dict[str, Any]:
    """The stack file's config, as plain values (Pulumi.<stack>.yaml)."""
    path = PROGRAM_DIR / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"offline_render: --stack {stack!r}: no {path.name} (stacks: {', '.join(available_stacks())})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict((yaml.load(path.read_text(), Loader=loader) or {}).get("config") or {})


def available_stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in PROGRAM_DIR.glob("Pulumi.*.yaml"))


def _engine_config(config: dict[str, Any]) -> dict[str, str]:
    # The engine hands the program objects as JSON text and scalars as strings.
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def run_program(stack: str, config: dict[str, Any], mocks: RecordingMocks, preview: bool = False) -> dict[str, Any]:
    """Runs __main__.py under these mocks with this config; returns the stack's outputs."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(_engine_config(config))
    outputs: dict[str, Any] = {}
    try:

        @pulumi.runtime.test  # type: ignore[untyped-decorator]  # pulumi's decorator is untyped
        def program() -> None:
            pulumi.runtime.register_stack_transformation(mocks.record_options)
            runpy.run_path(str(PROGRAM_DIR / "__main__.py"), run_name="__main__")

        program()
        outputs = _resolved_outputs()
    finally:
        pulumi.runtime.set_all_config({})
    return outputs


def _resolved_outputs() -> dict[str, Any]:
    stack_resource = pulumi.runtime.settings.get_root_resource()
    return dict(getattr(stack_resource, "outputs", {}) or {}) if stack_resource else {}


def render_stack(
    stack: str = "prod", overrides: dict[str, Any] | None = None, redis_endpoint: str | None = None
) -> StackRender:
    config = apply_overrides(stack_file_config(stack), overrides or {})
    mocks = RecordingMocks(str(config.get("aws:region") or "eu-west-1"), redis_endpoint)
    outputs = run_program(stack, config, mocks)
    instances = [
        RenderedInstance(
            logical_name=r.name.removeprefix(f"{stack}-"),
            role=r.inputs["tags"][ROLE_TAG],
            tags=dict(r.inputs["tags"]),
            user_data=decode_user_data(r.inputs["userDataBase64"]),
        )
        for r in mocks.resources
        if r.type_ == INSTANCE_TYPE
    ]
    return StackRender(stack, instances, mocks.resources, outputs)
