"""The layers point one way: config/ -> __main__.py -> components. Components take flat,
typed args and import neither the settings nor the renderer, so each can be built alone; the
renderer and the machine contract know nothing of Pulumi."""

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


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "components").glob("*.py")), ids=lambda p: p.name)
def test_components_import_neither_settings_nor_userdata(path: Path):
    assert top_level(imported_modules(path)) & {"settings", "userdata", "offline_render", "ops"} == set()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "userdata").glob("*.py")), ids=lambda p: p.name)
def test_the_renderer_and_the_contract_know_nothing_of_pulumi_or_components(path: Path):
    assert top_level(imported_modules(path)) & {"pulumi", "pulumi_aws", "components", "offline_render"} == set()


def test_the_machine_contract_needs_only_the_standard_library():
    # The VM image carries a copy of it for the probe, with nothing else of the repository.
    assert imported_modules(REPO_ROOT / "userdata/layout.py") == {"__future__"}


def test_the_ops_tool_shares_only_the_contract_and_the_template_with_the_program():
    # The release builder alone also reads a stack file the way the program does (settings.py:
    # its validation and defaults, e.g. instances.architecture), instead of a copy of them. The
    # remote scripts are filled by the units' own strict template (userdata/template.py, standard
    # library only), so both fail the same way on a missing value.
    allowed = {"build_release.py": {"userdata.layout", "settings"}}
    for path in (REPO_ROOT / "ops").rglob("*.py"):
        shared = {m for m in imported_modules(path) if top_level({m}) & {"userdata", "settings", "components"}}
        assert shared <= allowed.get(path.name, {"userdata.layout", "userdata.template"}), path.name


def test_the_template_needs_only_the_standard_library():
    assert imported_modules(REPO_ROOT / "userdata/template.py") == {"__future__", "string"}


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "ops/remote").glob("*.py")), ids=lambda p: p.name)
def test_the_remote_python_parts_import_nothing_of_the_repository(path: Path):
    # They run on the instance (its /usr/bin/python3, or the release's venv for the healthcheck),
    # where the repository is not.
    own = {"ops", "userdata", "settings", "components", "offline_render", "policy", "release_name", "tests"}
    assert top_level(imported_modules(path)) & own == set()
