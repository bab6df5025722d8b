"""The GitHub workflows, checked by actionlint and zizmor (installed by scripts/setup.d/30-guardrails.sh).

actionlint checks syntax, expressions, job graphs, permissions, the inputs of the local composite
action and, through shellcheck, every `run:` script. Its database of popular actions knows
inputs by major version (`pulumi/actions@v7`), not by commit: the workflows pin commits, so one
test lints a copy with each pin rewritten to the major version its comment names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_render.program import available_stacks
from tests import REPO_ROOT

ACTIONLINT = REPO_ROOT / ".venv" / "bin" / "actionlint"
ZIZMOR = REPO_ROOT / ".venv" / "bin" / "zizmor"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
PINNED = re.compile(
    r"uses: (?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40}) # (?P<version>v\d+)\.\d+\.\d+$", re.MULTILINE
)


def actionlint(project: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), "actionlint missing: run bash scripts/setup.sh guardrails"
    assert shutil.which("shellcheck"), "shellcheck missing: run bash scripts/setup.sh guardrails"
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", "-oneline"], cwd=project, capture_output=True, text=True, timeout=120
    )


def zizmor(project: Path) -> subprocess.CompletedProcess[str]:
    assert ZIZMOR.exists(), "zizmor missing: run bash scripts/setup.sh guardrails"
    return subprocess.run(
        [str(ZIZMOR), "--offline", "--no-progress", "--format", "plain", ".github/"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_github_dir(tmp_path: Path, edit: Callable[[str], str] = lambda text: text) -> Path:
    """A project holding a copy of .github/ with `edit` applied to each workflow and action file."""
    shutil.copytree(REPO_ROOT / ".github", tmp_path / ".github")
    for path in (tmp_path / ".github").rglob("*.yml"):
        path.write_text(edit(path.read_text()))
    # actionlint finds the project (local actions, called workflows) by its git repository.
    assert shutil.which("git"), "git missing"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    return tmp_path


def major_version_pins(text: str) -> str:
    return PINNED.sub(lambda m: f"uses: {m['action']}@{m['version']}", text)


def workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = [step for step in job["steps"] if str(step.get("uses", "")).startswith(action + "@")]
    assert len(found) == 1, f"expected one {action} step"
    return found[0]


def test_every_workflow_passes_actionlint() -> None:
    result = actionlint(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_remote_actions_are_pinned_to_a_commit_with_its_version() -> None:
    github = REPO_ROOT / ".github"
    for path in sorted([*github.rglob("*.yml"), *github.rglob("*.yaml")]):
        for line in path.read_text().splitlines():
            used = line.strip().removeprefix("- ")
            if used.startswith("uses:") and not used.startswith("uses: ./"):
                assert PINNED.fullmatch(used), f"{path.name}: {used!r} is not pinned as `owner/repo@<sha> # vX.Y.Z`"


def test_inputs_of_pinned_actions_match_their_metadata(tmp_path: Path) -> None:
    project = copy_of_github_dir(tmp_path, major_version_pins)
    assert "@v7\n" in (project / ".github" / "workflows" / "pulumi.yml").read_text()
    result = actionlint(project)
    assert result.returncode == 0, result.stdout + result.stderr


BREAKAGES = {
    # a misspelled permission value
    "permission": ("id-token: write", "id-token: writ", "permissions"),
    # a job that needs a job that does not exist
    "needs": ("needs: [up-staging, preview-prod]", "needs: [up-staging, preview]", "job-needs"),
    # a misspelled input of the local composite action
    "composite-input": ("role-to-assume: ${{ vars.AWS_ROLE_ARN }}", "role-to-asume: x", "action"),
    # a misspelled input of pulumi/actions (checked against its metadata)
    "action-input": ("policyPacks: policy", "policyPack: policy", "action"),
    # a PR title (attacker-controlled) pasted into a shell script
    "script-injection": ('echo "names=$names"', 'echo "${{ github.event.pull_request.title }}"', "expression"),
    # shellcheck inside a run: script
    "shellcheck": ('>> "$GITHUB_OUTPUT"', ">> $GITHUB_OUTPUT", "shellcheck"),
    # an expression that does not parse
    "expression": ("${{ matrix.stack }}", "${{ matrix.stack ", "expression"),
    # an input the reusable workflow does not declare
    "workflow-call-input": ("      command: preview\n", "      comand: preview\n", "workflow-call"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_workflow_fails_actionlint(tmp_path: Path, breakage: str) -> None:
    original, broken, rule = BREAKAGES[breakage]

    def break_it(text: str) -> str:
        return major_version_pins(text).replace(original, broken)

    project = copy_of_github_dir(tmp_path, break_it)
    changed = [p for p in (project / ".github").rglob("*.yml") if broken in p.read_text()]
    assert changed, f"{original!r} is not in any workflow any more: update this test"
    result = actionlint(project)
    assert result.returncode == 1, result.stdout + result.stderr  # 1: problems found (3 would be a crash)
    assert re.search(rf"\[{rule}\]|{rule}", result.stdout), result.stdout


def test_every_workflow_passes_zizmor() -> None:
    result = zizmor(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


ZIZMOR_BREAKAGES = {
    # pull_request_target runs with the base repository's secrets on a fork's code
    "dangerous-triggers": ("pull-request.yml", "\n  pull_request:\n", "\n  pull_request_target:\n"),
    "excessive-permissions": ("deploy.yml", "permissions:\n  contents: read\n", "permissions: write-all\n"),
    "unpinned-uses": (
        "tests.yml",
        "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1",
        "actions/checkout@main",
    ),
}


@pytest.mark.parametrize("audit", sorted(ZIZMOR_BREAKAGES))
def test_an_insecure_workflow_fails_zizmor(tmp_path: Path, audit: str) -> None:
    name, original, insecure = ZIZMOR_BREAKAGES[audit]
    project = copy_of_github_dir(tmp_path)
    path = project / ".github" / "workflows" / name
    assert original in path.read_text(), f"{original!r} is not in {name} any more: update this test"
    path.write_text(path.read_text().replace(original, insecure, 1))
    result = zizmor(project)
    assert result.returncode != 0 and f"[{audit}]" in result.stdout, result.stdout + result.stderr


def test_preview_matrix_lists_every_stack_file(tmp_path: Path) -> None:
    job = workflow("pull-request.yml")["jobs"]["stacks"]
    script = next(step["run"] for step in job["steps"] if step.get("id") == "list")
    output = tmp_path / "github-output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output)}
    subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=REPO_ROOT, env=env, check=True, timeout=30)
    names = yaml.safe_load(output.read_text().removeprefix("names="))
    assert names == available_stacks()
    assert {"prod", "staging"} <= set(names)


def test_every_stack_job_runs_the_policy_pack() -> None:
    (job,) = workflow("pulumi.yml")["jobs"].values()
    pulumi = step_using(job, "pulumi/actions")["with"]
    assert (pulumi["command"], pulumi["stack-name"], pulumi["policyPacks"]) == (
        "${{ inputs.command }}",
        "${{ inputs.stack }}",
        "policy",
    )
    assert set(workflow("pulumi.yml")[True]["workflow_call"]["inputs"]) == {"command", "stack", "environment"}


def test_aws_credentials_come_from_oidc_only() -> None:
    for name in ("pull-request.yml", "deploy.yml", "pulumi.yml"):
        for job_name, job in workflow(name)["jobs"].items():
            if "steps" in job and any(step.get("uses") == "./.github/actions/pulumi-setup" for step in job["steps"]):
                assert job["permissions"]["id-token"] == "write", f"{name}: {job_name}"
    setup = (REPO_ROOT / ".github" / "actions" / "pulumi-setup" / "action.yml").read_text()
    assert "role-to-assume: ${{ inputs.role-to-assume }}" in setup
    for path in (REPO_ROOT / ".github").rglob("*.yml"):
        assert "aws-access-key-id" not in path.read_text() and "AWS_SECRET_ACCESS_KEY" not in path.read_text()


def test_each_lane_is_a_parallel_job_in_debian_12() -> None:
    job = workflow("tests.yml")["jobs"]["lane"]
    assert job["container"]["image"] == "debian:12"
    assert job["strategy"]["fail-fast"] is False
    options = {entry["lane"]: entry["container-options"] for entry in job["strategy"]["matrix"]["include"]}
    assert set(options) == {"unit", "e2e", "vm", "guardrails"}
    # Only the lanes that mount (the e2e harness's namespaces, debootstrap) and use /dev/kvm are privileged.
    assert {lane for lane, opts in options.items() if "--privileged" in opts} == {"e2e", "vm"}
    (run,) = [step for step in job["steps"] if "test.sh" in step.get("run", "")]
    assert run["run"] == 'CI=true bash scripts/test.sh "$LANE"'
    assert run["env"]["LANE"] == "${{ matrix.lane }}"
