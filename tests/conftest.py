"""Shared fixtures: the program rendered under Pulumi mocks, and settings for pure render tests.
Also puts every test in its lane (scripts/test.sh LANE) by the directory it lives in."""

from __future__ import annotations

import fcntl
import functools
import gc
import hashlib
import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from e2e_harness.leftovers import remove_dead_runs

from config import Settings, load_settings
from config.kinds import MachineKind, beat_kind, web_kind, worker_kind
from offline_render.fake_aws import ACCOUNT, RecordedResource, RecordingMocks, write_only
from offline_render.program import StackRender, fresh_event_loop, render_stack, use_mocks, without_declaration_stacks
from offline_render.report import SECRET_SIG, SECRET_SIG_KEY
from tests import REPO_ROOT
from tests.machine_scripts import process_dir, sweep_shipped_dirs
from userdata.layout import ORIGINAL_PROJECT

TESTS = Path(__file__).resolve().parent
# Lane by directory under tests/ ("" = tests/ itself); the markers are registered in pyproject.toml.
LANES = {"": "unit", "ops": "unit", "e2e": "e2e", "vm": "vm", "guardrails": "guardrails"}


def lane_of(path: Path) -> str | None:
    directory = path.resolve().relative_to(TESTS).parent.parts[:1]
    return LANES.get(directory[0] if directory else "")


@pytest.hookimpl(tryfirst=True)  # before `-m LANE` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    homeless = sorted({str(item.path) for item in items if lane_of(item.path) is None})
    if homeless:
        raise pytest.UsageError(f"tests outside every lane (tests/conftest.py LANES: {sorted(LANES)}): {homeless}")
    for item in items:
        item.add_marker(str(lane_of(item.path)))
    items.sort(key=lambda item: started_first(item.path))


# The unit lane's longest tests (seconds each: venvs built by the real app-release, the render's
# command line run as a process). xdist hands out tests in collection order; these came last, and
# one worker ran them while the other sat idle for 2-3 s. (xdist hands out its groups first,
# largest first: tests/ops, with the web drain's gunicorns, is one.)
STARTED_FIRST = ("test_release_tool.py", "test_offline_render.py")


def started_first(path: Path) -> int:
    """The position of a test's module in STARTED_FIRST (the rest after, in their order)."""
    module = path.resolve().relative_to(TESTS).as_posix()
    return STARTED_FIRST.index(module) if module in STARTED_FIRST else len(STARTED_FIRST)


# scripts/test.sh's temp dir for everything a run writes (its TMPDIR): /tmp/test-run-<its pid>-*.
RUN_TREES = "test-run-"

# The workerinput key naming the directory where a run's xdist workers share their renders.
SHARED_RENDERS = "shared_renders"
_shared_renders: Path | None = None


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it too; a run with `-p no:xdist` still meets it in the test modules.
    config.addinivalue_line("markers", "xdist_group(name): tests that share a costly setup, run by one xdist worker")
    if not hasattr(config, "workerinput"):  # once per run, in the controlling process
        # A killed run's temp dir, with what it left running there (test.sh removes its own).
        remove_dead_runs(RUN_TREES, "/tmp")
        sweep_shipped_dirs()
        # Not pytest's numbered trees (<temp>/pytest-of-<user>/pytest-N): it keeps the last three
        # sessions' there, and set to keep none, a session removed at its end those of every run
        # still going beside it (an e2e lane lost its trees to a unit test run at the same time).
        # This run's trees are its own: under its process directory, removed at its exit, or by
        # the next run's sweep if it was killed.
        if config.option.basetemp is None:
            config.option.basetemp = str(process_dir() / "pytest")
    elif SHARED_RENDERS in config.workerinput:
        global _shared_renders
        _shared_renders = Path(config.workerinput[SHARED_RENDERS])


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's: the controlling process starts a worker
def pytest_configure_node(node: Any) -> None:
    renders = process_dir() / "renders"  # removed with the controlling process's directory
    renders.mkdir(exist_ok=True)
    node.workerinput[SHARED_RENDERS] = str(renders)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker sends the collected ids to the scheduler
def pytest_collection_finish(session: pytest.Session) -> None:
    """`--dist loadgroup` sends a group to one worker by the `@name` it appends to the node ids;
    a pytest that ignores that (pytest-xdist#1386) would split every group silently, each
    worker paying the group's shared setup."""
    if not getattr(session.config.option, "loadgroup", False):  # set in xdist's workers only
        return
    dropped = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and not item.nodeid.endswith(f"@{xdist_group(item)}")
    ]
    if dropped:
        message = (
            f"--dist loadgroup dropped the xdist_group of {len(dropped)} tests (first: {dropped[0]}): "
            "this pytest and pytest-xdist do not group (pytest-xdist#1386; pyproject.toml pins pytest)"
        )
        # xdist shows a worker's failed collection only as "no active workers": say why on the
        # terminal the worker inherited from the run.
        print(f"tests/conftest.py: {message}", file=sys.__stderr__, flush=True)
        raise pytest.UsageError(message)


def xdist_group(item: pytest.Item) -> str:
    return "_".join(sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")}))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`-m LANE` naming one lane collects only that lane's tests: the unit lane's workers skip
    importing the root-only harnesses and building 300 items they would deselect."""
    lane = config.getoption("markexpr")
    if lane not in LANES.values() or collection_path.resolve() == TESTS:
        return None
    if collection_path.is_dir():
        path_lane = lane_of(collection_path / "test_any.py")
    elif collection_path.name.startswith("test_"):
        path_lane = lane_of(collection_path)
    else:
        return None
    # None: a directory of no lane is collected, so that collection fails naming it.
    return True if path_lane not in (lane, None) else None


@pytest.hookimpl(tryfirst=True)  # before xdist's worker loop takes its first test
def pytest_runtestloop(session: pytest.Session) -> None:
    """What exists before the first test (the modules, the collected items: ~210,000 objects an
    xdist worker) lives until the process ends: frozen, no collection walks it again, and the
    last one (below) only what the tests made. 0.15-0.25 s less a worker (2026-12-05)."""
    gc.freeze()


@pytest.hookimpl(tryfirst=True)  # before pytest's own collections for unraisable exceptions
def pytest_unconfigure(config: pytest.Config) -> None:
    """One full collection runs the finalizers of everything the tests left behind (pytest reports
    their unraisable exceptions); then what is still alive is frozen: the session's renders,
    service models and modules, which pytest's further collections and the interpreter's exit
    would otherwise traverse again, over a second per xdist worker."""
    gc.collect()
    gc.freeze()


@functools.cache
def _render_once(stack: str, overrides_json: str, redis_endpoint: str | None, project: str | None) -> StackRender:
    """Renders in this process, or takes the render another xdist worker of the run made of the
    same config (a pickled copy: one worker's tests cannot change another's). Per config, the
    first worker renders while holding its lock, so the other waits instead of rendering it too."""
    render = functools.partial(
        render_stack, stack, overrides=json.loads(overrides_json), redis_endpoint=redis_endpoint, project=project
    )
    if _shared_renders is None:
        return render()
    key = hashlib.sha256(json.dumps([stack, overrides_json, redis_endpoint, project]).encode()).hexdigest()
    path = _shared_renders / f"{key}.pickle"
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            shared: StackRender = pickle.loads(path.read_bytes())
            return shared
        made = render()
        path.write_bytes(pickle.dumps(made, protocol=pickle.HIGHEST_PROTOCOL))
        return made


def rendered(
    stack: str, overrides: dict[str, Any] | None = None, redis_endpoint: str | None = None, project: str | None = None
) -> StackRender:
    """A stack run under mocks with these config overrides (dotted paths), as a stack of
    `project` (default: Pulumi.yaml's). A render is a pure function of its config
    (test_offline_render proves two are byte-identical), so each distinct config runs once per
    session and tests share the result: read it, never change it."""
    return _render_once(stack, json.dumps(overrides or {}), redis_endpoint, project)


# Configs the tests of several modules render, named once so that each is one render a run (a
# render is ~0.2 s of the unit lane's CPU). Each test still checks only what its own keys do.
# prod without its load balancer (web reached from a network and a group of the user's), Beat,
# Redis replica and worker scaling, unprotected and with no alert email (which only an
# unprotected stack may have).
SMALL = {
    "loadBalancer": {"enabled": False},
    "web.ingressCidrs": ["10.40.0.0/16"],
    "web.ingressSecurityGroupIds": ["sg-0123456789abcdef0"],
    "worker.beat": False,
    "redis.replicas": 0,
    "redis.multiAz": False,
    "worker.maxSize": 1,
    "security.protect": False,
    "alerts.emails": [],
}
# prod's load balancer with a certificate of the user's: no domain, so no DNS and no issued one.
GIVEN_CERTIFICATE_ARN = f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/0a1b2c3d-1111-2222-3333-444455556666"
GIVEN_CERTIFICATE = {"loadBalancer": {"certificateArn": GIVEN_CERTIFICATE_ARN}}
# prod with the network's, the instance logs' and the stack key's keys that test_network, test_logs
# and test_encryption read moved off their defaults, each retention to a value of its own.
KEY_ADMINISTRATOR_ARN = f"arn:aws:iam::{ACCOUNT}:role/django-stack-deploy"
TUNED_OPERATIONS = {
    "network.natGateways": "single",
    "network.availabilityZones": 3,
    "security.flowLogRetentionDays": 365,
    "logs.retentionDays": 180,
    "security.keyAdministratorArn": KEY_ADMINISTRATOR_ARN,
}


@pytest.fixture(scope="session")
def prod() -> StackRender:
    """The prod stack exactly as Pulumi.prod.yaml configures it."""
    return rendered("prod")


@pytest.fixture
def render() -> Callable[..., StackRender]:
    """Renders the prod stack with config overrides (dotted paths)."""
    return lambda overrides=None, **kwargs: rendered("prod", overrides, **kwargs)


@pytest.fixture
def build_alone() -> Callable[[Callable[[], object]], list[RecordedResource]]:
    """Builds one component under fresh Pulumi mocks, with plain inputs and no settings or
    program around it; returns every resource it registered, in order."""

    def build(construct: Callable[[], object]) -> list[RecordedResource]:
        with fresh_event_loop(), without_declaration_stacks():
            mocks = RecordingMocks("eu-west-1", None)
            use_mocks(mocks, ORIGINAL_PROJECT, "alone")

            @pulumi.runtime.test
            def run() -> None:
                construct()

            run()
        return mocks.resources

    return build


def diffed(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs Pulumi diffs: a write-only input's value is made afresh on every run and never
    compared (its version says when it is sent)."""
    return {key: value for key, value in inputs.items() if not write_only(key)}


def of_type(resources: list[RecordedResource], type_: str) -> list[RecordedResource]:
    return [r for r in resources if r.type_ == type_]


def prod_config_values() -> dict[str, Any]:
    """The prod stack file's `<project>:*` values, keyed as load_settings receives them (a
    fresh dict each call: tests change their copy)."""
    return dict(_prod_config_values())


@functools.cache
def _prod_config_values() -> dict[str, Any]:
    config = yaml.load((REPO_ROOT / "Pulumi.prod.yaml").read_text(), Loader=yaml.CSafeLoader)["config"]
    return {k.split(":", 1)[1]: json.dumps(v) for k, v in config.items() if k.startswith(f"{ORIGINAL_PROJECT}:")}


@pytest.fixture
def prod_settings() -> Settings:
    return load_settings(prod_config_values(), stack="prod", region="eu-west-1")


__all__ = ["SECRET_SIG_KEY", "is_secret", "named", "of_type", "only", "prod_config_values", "rendered"]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def only(render: StackRender, type_: str) -> dict[str, Any]:
    found = render.of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
    return found[0].inputs


def named(render: StackRender, type_: str, name: str) -> dict[str, Any]:
    found = [r for r in render.of_type(type_) if r.name == name]
    assert len(found) == 1, f"no {type_} named {name}: {[r.name for r in render.of_type(type_)]}"
    return found[0].inputs


def kind_of(settings: Settings, role: str, beat: bool = False) -> MachineKind:
    """The stack's kind of machine with this role (the worker kind that runs Beat with beat)."""
    return beat_kind(settings) if beat else {"web": web_kind, "worker": worker_kind}[role](settings)
