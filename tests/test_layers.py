"""The layers point one way: the machine contract (userdata/layout.py) <- config/ <- the renderer
(userdata/render.py) <- program.py (read_settings, build) <- __main__.py and the offline render;
components sit beside them. Components take flat, typed args and import neither the settings nor
the renderer, so each can be built alone; the renderer and the machine contract know nothing of
Pulumi; config/ is a leaf; no module of the program imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import REPO_ROOT


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


# What `pulumi up` runs, and the offline render and the policy pack that run it too.
PROGRAM = [
    "__main__.py",
    "program.py",
    "release_name.py",
    "config",
    "components",
    "userdata",
    "offline_render",
    "policy",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """Each module of the program -> the modules of the program it imports (at the top or inside a
    function: a deferred import is still a cycle, only one that hides until it runs)."""
    paths = [
        p for entry in PROGRAM for p in ([root / entry] if entry.endswith(".py") else (root / entry).rglob("*.py"))
    ]
    modules = {module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        imported = imported_modules(path)
        # `from config import load_settings` names the package; `from config.schema import X` the module.
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for following in sorted(graph[node]):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_program_imports_itself_back():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found():
    assert cycles({"config": {"userdata.render"}, "userdata.render": {"config"}, "leaf": set()}) == [
        ["config", "userdata.render"]
    ]


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "config").glob("*.py")), ids=lambda p: p.name)
def test_config_is_a_leaf_that_imports_only_the_machine_contract(path: Path):
    # Its own modules, the contract and the release-name rule (standard library only, shared with
    # the ops tool and the build script); nothing of the renderer, the program or the components.
    own = {"config", "userdata", "program", "components", "offline_render", "ops", "policy", "release_name", "__main__"}
    imported = {m for m in imported_modules(path) if top_level({m}) & own}
    assert {m for m in imported if top_level({m}) != {"config"}} <= {"userdata.layout", "release_name"}


def test_the_renderer_builds_on_the_settings_never_on_the_program():
    assert top_level(imported_modules(REPO_ROOT / "userdata/render.py")) & {"program", "__main__"} == set()


def test_main_calls_the_program_and_nothing_else():
    # The offline render calls the same two functions: what it shows is what `pulumi up` builds.
    assert imported_modules(REPO_ROOT / "__main__.py") == {"program"}


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "components").glob("*.py")), ids=lambda p: p.name)
def test_components_import_neither_settings_nor_userdata(path: Path):
    assert top_level(imported_modules(path)) & {"config", "program", "userdata", "offline_render", "ops"} == set()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "userdata").glob("*.py")), ids=lambda p: p.name)
def test_the_renderer_and_the_contract_know_nothing_of_pulumi_or_components(path: Path):
    assert (
        top_level(imported_modules(path)) & {"pulumi", "pulumi_aws", "components", "program", "offline_render"} == set()
    )


def test_the_machine_contract_needs_only_the_standard_library():
    # The VM image carries a copy of it for the probe, with nothing else of the repository.
    assert imported_modules(REPO_ROOT / "userdata/layout.py") == {"__future__"}


def test_the_ops_tool_shares_only_the_contract_and_the_template_with_the_program():
    # The release builder alone also reads a stack file the way the program does (config/:
    # its validation and defaults, e.g. instances.architecture), instead of a copy of them. The
    # remote scripts are filled by the units' own strict template (userdata/template.py, standard
    # library only), so both fail the same way on a missing value.
    allowed = {"build_release.py": {"userdata.layout", "config"}}
    for path in (REPO_ROOT / "ops").rglob("*.py"):
        shared = {m for m in imported_modules(path) if top_level({m}) & {"userdata", "config", "program", "components"}}
        assert shared <= allowed.get(path.name, {"userdata.layout", "userdata.template"}), path.name


def test_the_template_needs_only_the_standard_library():
    assert imported_modules(REPO_ROOT / "userdata/template.py") == {"__future__", "string"}


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "ops/remote").glob("*.py")), ids=lambda p: p.name)
def test_the_remote_python_parts_import_nothing_of_the_repository(path: Path):
    # They run on the instance (its /usr/bin/python3, or the release's venv for the healthcheck),
    # where the repository is not.
    own = {"ops", "userdata", "config", "program", "components", "offline_render", "policy", "release_name", "tests"}
    assert top_level(imported_modules(path)) & own == set()
