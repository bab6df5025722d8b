"""Runs the real Pulumi program (program.py's `build(read_settings())`, as __main__.py does) for a
stack under the fake AWS, with the stack file's config (plus overrides), and collects what it
would create: every resource with its inputs, each kind of machine (one per launch template) and
each instance the Auto Scaling groups would launch, with its user-data as cloud-init would read it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import pulumi
import pulumi.runtime.resource
import yaml
from pulumi.runtime.proto import source_pb2

from offline_render.fake_aws import (
    AUTOSCALING_GROUP_TYPE,
    LAUNCH_TEMPLATE_TYPE,
    SECRET_SIG,
    SECRET_SIG_KEY,
    RecordedResource,
    RecordingMocks,
    mock_id,
)
from offline_render.overrides import apply_overrides
from ops.stack import program_project
from userdata.layout import NAME_TAG, PROJECT_TAG, ROLE_TAG, STACK_TAG, resource_prefix
from userdata.render import decode_user_data

# Where Pulumi.yaml, the stack files and the program live.
PROGRAM_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RenderedInstance:
    """One instance an Auto Scaling group launches: its template's user-data and the tags the
    group propagates. AWS gives every instance of a group the group's Name; here the Name also
    carries the instance's index (`prod-web-1`), standing in for the instance id that tells
    them apart in AWS."""

    logical_name: str
    role: str
    tags: dict[str, str]
    user_data: str


@dataclass(frozen=True)
class MachineKind:
    """One launch template and its Auto Scaling group: every instance of the group boots the same
    user-data, so a kind is what a reviewer reads (`web`, `worker`, `worker-beat`)."""

    name: str
    role: str
    template: str  # the launch template's logical name
    capacity: int  # the group's desiredCapacity
    tags: dict[str, str]  # what the group propagates to each instance
    user_data: str


@dataclass(frozen=True)
class StackRender:
    stack: str
    instances: list[RenderedInstance]
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    # Values the fake AWS made up (ids, ARNs, endpoints): marked as such in the report.
    placeholders: frozenset[str] = frozenset()
    # Each resource's URN -> its aliases' (RecordingMocks.urns).
    urns: dict[str, list[str]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type_ == type_]

    @property
    def kinds(self) -> list[MachineKind]:
        return machine_kinds(self.resources)


def stack_file_config(stack: str, program_dir: Path = PROGRAM_DIR) -> dict[str, Any]:
    """The stack file's config, as plain values (Pulumi.<stack>.yaml)."""
    path = program_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = ", ".join(available_stacks(program_dir))
        raise SystemExit(f"offline_render: --stack {stack!r}: no {path.name} (stacks: {stacks})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict((yaml.load(path.read_text(), Loader=loader) or {}).get("config") or {})


def available_stacks(program_dir: Path = PROGRAM_DIR) -> list[str]:
    return sorted(p.name.split(".")[1] for p in program_dir.glob("Pulumi.*.yaml"))


def _engine_config(config: dict[str, Any]) -> dict[str, str]:
    # The engine hands the program objects as JSON text and scalars as strings.
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


_Result = TypeVar("_Result")
_Args = TypeVarTuple("_Args")


class _InlineMonitorLoop(asyncio.SelectorEventLoop):
    """Pulumi hands each call to its resource monitor to a thread (run_in_executor): a gRPC call
    to the engine blocks. The mocks' monitor answers at once, so the call runs in place, and a
    render (~150 calls) pays no thread hand-off and GIL switch per resource.
    It also keeps the tasks it created: asyncio.all_tasks(loop) walks every task of every loop
    not yet garbage-collected (~2,000 a render), which in the tests, rendering dozens of times,
    cost more than a render's own closing."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[asyncio.Task[Any]] = []

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = super().create_task(coro, **kwargs)
        self.created.append(task)
        return task

    def run_in_executor(
        self, executor: concurrent.futures.Executor | None, func: Callable[[*_Args], _Result], *args: *_Args
    ) -> asyncio.Future[_Result]:
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except Exception as error:  # to the awaiting task, as the executor's future hands it
            future.set_exception(error)
        return future


@contextlib.contextmanager
def fresh_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for one run of Pulumi's mocks, closed after it. Pulumi leaves tasks pending
    (outputs nobody awaits); in a loop left open they keep every Output and resource of the run
    alive, and a process that renders many times (the tests) grew by ~17,000 objects a render,
    each garbage collection slower than the last.
    The collector waits for the run's end: a render makes ~30,000 short-lived cyclic objects
    (Outputs, their tasks and contexts), which the collector's passes promoted while the render
    ran and then left as garbage in the oldest generation, for a full collection to walk (in the
    tests, over a million objects by the end). With the collector off while it runs, one pass
    over the young generations at the end frees the run's garbage. Pulumi keeps a cancelled
    output's task in its settings "to pick up at program exit": this run's are dropped there."""
    loop = _InlineMonitorLoop()
    asyncio.set_event_loop(loop)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield loop
    finally:
        pending = [task for task in loop.created if not task.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)
        pulumi.runtime.settings.SETTINGS.outputs.difference_update(loop.created)
        loop.created.clear()
        if collecting:
            gc.enable()
            gc.collect(1)  # this run's objects, and the previous run's the settings held until now


@contextlib.contextmanager
def without_declaration_stacks() -> Iterator[None]:
    """Pulumi sends the engine each resource's call stack (every frame as a file URI), so that
    `pulumi preview` can point at the line that declared it. Mocks have no engine and drop it;
    taking it was a fifth of a render. An empty stack gives no source position, as for a resource
    declared outside any file. (Patched by name: a Pulumi that renames it fails here, loudly.)"""
    taken = pulumi.runtime.resource._get_stack_trace
    pulumi.runtime.resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        pulumi.runtime.resource._get_stack_trace = taken


def use_mocks(mocks: pulumi.runtime.Mocks, project: str, stack: str, preview: bool = False) -> None:
    """These mocks for the next run, under a fresh root stack: set_mocks keeps an existing one,
    with the previous run's exports (a load balancer's url would show up in the next render's
    outputs) and its stack transformations (the previous run's mocks would record this run's
    resources)."""
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview)


def run_program(
    stack: str,
    config: dict[str, Any],
    mocks: RecordingMocks,
    preview: bool = False,
    project: str | None = None,
    program_dir: Path = PROGRAM_DIR,
) -> dict[str, Any]:
    """Runs the program under these mocks with this config, as a stack of `project` (default:
    Pulumi.yaml's); returns the stack's outputs as plain values, a secret one wrapped in Pulumi's
    secret signature as the engine stores it."""
    with fresh_event_loop() as loop, without_declaration_stacks():
        project = project or program_project(program_dir)
        return _run_program(stack, config, mocks, preview, project, loop, program_dir)


def _run_program(
    stack: str,
    config: dict[str, Any],
    mocks: RecordingMocks,
    preview: bool,
    project: str,
    loop: asyncio.AbstractEventLoop,
    program_dir: Path,
) -> dict[str, Any]:
    use_mocks(mocks, project, stack, preview)
    pulumi.runtime.set_all_config(_engine_config(config))
    outputs: dict[str, Any] = {}
    try:

        @pulumi.runtime.test  # type: ignore[untyped-decorator]  # pulumi's decorator is untyped
        def program() -> None:
            pulumi.runtime.register_stack_transformation(mocks.record_options)
            # Imported when it runs: a --compare copy's program (cli.use_program) replaces this one's.
            from program import build, read_settings

            build(read_settings())

        program()
        outputs = {name: loop.run_until_complete(_stored(value)) for name, value in _exported().items()}
    finally:
        pulumi.runtime.set_all_config({})
    return outputs


def _exported() -> dict[str, Any]:
    stack_resource = pulumi.runtime.settings.get_root_resource()
    return dict(getattr(stack_resource, "outputs", {}) or {}) if stack_resource else {}


async def _stored(value: Any) -> Any:
    output = pulumi.Output.from_input(value)
    plain = await output.future()
    return {SECRET_SIG_KEY: SECRET_SIG, "value": plain} if await output.is_secret() else plain


def render_stack(
    stack: str = "prod",
    overrides: dict[str, Any] | None = None,
    redis_endpoint: str | None = None,
    project: str | None = None,
    program_dir: Path = PROGRAM_DIR,
) -> StackRender:
    """project: render the stack as another project's (as if Pulumi.yaml named it, with the stack
    file's config under that name); default: Pulumi.yaml's own."""
    own = program_project(program_dir)
    project = project or own
    config = {
        f"{project}:{key.removeprefix(f'{own}:')}" if key.startswith(f"{own}:") else key: value
        for key, value in stack_file_config(stack, program_dir).items()
    }
    config = apply_overrides(config, overrides or {}, project)
    mocks = RecordingMocks(str(config.get("aws:region") or "eu-west-1"), redis_endpoint)
    outputs = run_program(stack, config, mocks, project=project, program_dir=program_dir)
    placeholders = frozenset(mocks.placeholders)
    return StackRender(stack, launched_instances(mocks.resources), mocks.resources, outputs, placeholders, mocks.urns)


def machine_kinds(resources: list[RecordedResource]) -> list[MachineKind]:
    """One kind per Auto Scaling group and its launch template, named by the group's Name tag
    without the stack (`prod-worker-beat` -> `worker-beat`), by name (registration order varies)."""
    templates = {mock_id("lt", r.name): r for r in resources if r.type_ == LAUNCH_TEMPLATE_TYPE}
    kinds = []
    for group in (r for r in resources if r.type_ == AUTOSCALING_GROUP_TYPE):
        template = templates[group.inputs["launchTemplate"]["id"]]
        tags = {tag["key"]: tag["value"] for tag in group.inputs["tags"] if tag["propagateAtLaunch"]}
        kinds.append(
            MachineKind(
                name=tags[NAME_TAG].removeprefix(f"{resource_prefix(tags[PROJECT_TAG], tags[STACK_TAG])}-"),
                role=tags[ROLE_TAG],
                template=template.name,
                capacity=int(group.inputs["desiredCapacity"]),
                tags=tags,
                user_data=decode_user_data(template.inputs["userData"]),
            )
        )
    return sorted(kinds, key=lambda kind: kind.name)


def launched_instances(resources: list[RecordedResource]) -> list[RenderedInstance]:
    """desiredCapacity instances per Auto Scaling group, each booting its kind's user-data."""
    return [
        RenderedInstance(
            logical_name=f"{kind.name}-{index}",
            role=kind.role,
            tags={**kind.tags, NAME_TAG: f"{kind.tags[NAME_TAG]}-{index}"},
            user_data=kind.user_data,
        )
        for kind in machine_kinds(resources)
        for index in range(kind.capacity)
    ]
