"""What unreviewed code can reach in CI, and the road a merged change takes (issues 22.2, 23.4).

A pull request runs its own version of the workflows, so nothing a pull-request-triggered job
holds may read a stack's state or parameters: no OIDC token (no role), no environment, no secret.
The real boundary is GitHub's (secrets only in environments that deploy from main, roles trusted
for those environments' tokens only: docs/ci.md); these tests keep our
own workflows inside it, and each rule is shown to catch a seeded breach.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from offline_render.release_location import release_location
from tests import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
# Events whose run executes code, or workflow files, from a pull request's branch.
PULL_REQUEST_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment", "issue_comment"}
)
CREDENTIAL_ACTIONS = ("./.github/actions/pulumi-setup", "aws-actions/configure-aws-credentials@")
SECRET_REFERENCE = re.compile(r"\bsecrets\.(?!GITHUB_TOKEN\b)([A-Za-z_][A-Za-z0-9_]*)")
ROLE_VARIABLE = re.compile(r"\bvars\.([A-Za-z0-9_]*ROLE[A-Za-z0-9_]*)")


def load(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def events(workflow: dict[Any, Any]) -> set[str]:
    on = workflow[True]  # PyYAML reads the key `on` as True
    return {on} if isinstance(on, str) else set(on)


def jobs_run(path: Path, caller: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, job) of every job a run of this workflow executes, reusable workflows' jobs included
    (they run under the caller's event): `caller/job` names them."""
    for name, job in load(path)["jobs"].items():
        qualified = f"{caller}{name}"
        yield qualified, job
        called = str(job.get("uses", ""))
        if called.startswith("./.github/workflows/"):
            yield from jobs_run(path.parents[2] / called.removeprefix("./"), f"{qualified}/")


def reach(job: dict[str, Any]) -> list[str]:
    """What in one job could reach a stack's state or parameters."""
    text = yaml.safe_dump(job)
    found = []
    permissions = job.get("permissions")
    if permissions == "write-all" or (isinstance(permissions, dict) and permissions.get("id-token") == "write"):
        found.append("id-token: write (an OIDC token for a role)")
    if "environment" in job:
        found.append(f"environment {job['environment']!r} (its secrets and role)")
    if "secrets" in job:
        found.append("secrets passed to a called workflow")
    found += [f"secret {name}" for name in sorted(set(SECRET_REFERENCE.findall(text)))]
    found += [f"role variable {name}" for name in sorted(set(ROLE_VARIABLE.findall(text)))]
    found += [
        f"step {step['uses']}"
        for step in job.get("steps", [])
        if str(step.get("uses", "")).startswith(CREDENTIAL_ACTIONS)
    ]
    return found


def pull_request_reach(workflows: Path) -> list[str]:
    """`<workflow>: <job>: <what it holds>` for every job a pull request's event runs."""
    return [
        f"{path.name}: {name}: {held}"
        for path in sorted(workflows.glob("*.yml"))
        if events(load(path)) & PULL_REQUEST_EVENTS
        for name, job in jobs_run(path)
        for held in reach(job)
    ]


def copy_of_workflows(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / ".github", tmp_path / ".github")
    return tmp_path / ".github" / "workflows"


# The preview job pull-request.yml had before issue 22: a same-repository PR held prod's role and passphrase.
SEEDED_PREVIEW_JOB = """
  preview:
    name: preview ${{ matrix.stack }}
    needs: [tests, stacks]
    if: github.event.pull_request.head.repo.full_name == github.repository
    runs-on: ubuntu-24.04
    permissions:
      contents: read
      id-token: write
      pull-requests: write
    strategy:
      matrix:
        stack: ${{ fromJSON(needs.stacks.outputs.names) }}
    env:
      PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}
    steps:
      - uses: ./.github/actions/pulumi-setup
        with:
          role-to-assume: ${{ vars.AWS_PREVIEW_ROLE_ARN }}
          aws-region: ${{ vars.AWS_REGION }}
          session-name: preview
"""


def test_no_pull_request_job_can_reach_a_stacks_state_or_parameters() -> None:
    assert events(load(WORKFLOWS / "pull-request.yml")) == {"pull_request"}
    assert pull_request_reach(WORKFLOWS) == []


def test_a_seeded_pull_request_job_holding_the_prod_role_and_passphrase_is_caught(tmp_path: Path) -> None:
    workflows = copy_of_workflows(tmp_path)
    path = workflows / "pull-request.yml"
    path.write_text(path.read_text() + SEEDED_PREVIEW_JOB)
    assert pull_request_reach(workflows) == [
        "pull-request.yml: preview: id-token: write (an OIDC token for a role)",
        "pull-request.yml: preview: secret PULUMI_CONFIG_PASSPHRASE",
        "pull-request.yml: preview: role variable AWS_PREVIEW_ROLE_ARN",
        "pull-request.yml: preview: step ./.github/actions/pulumi-setup",
    ]


def test_a_pull_request_calling_the_deploy_workflow_is_caught_through_it(tmp_path: Path) -> None:
    workflows = copy_of_workflows(tmp_path)
    path = workflows / "pull-request.yml"
    path.write_text(
        path.read_text()
        + "\n  preview:\n    uses: ./.github/workflows/pulumi.yml\n"
        + "    with: {command: preview, stack: prod, environment: prod-preview}\n"
    )
    found = pull_request_reach(workflows)
    assert (
        "pull-request.yml: preview/pulumi: environment {'name': '${{ inputs.environment }}'} (its secrets and role)"
        in (found)
    )
    assert "pull-request.yml: preview/pulumi: secret PULUMI_CONFIG_PASSPHRASE" in found


def needed(jobs: dict[str, Any], name: str) -> set[str]:
    """Every job `name` waits for, directly or through others."""
    direct = jobs[name].get("needs", [])
    found = set([direct] if isinstance(direct, str) else direct)
    for other in list(found):
        found |= needed(jobs, other)
    return found


def runs_the_vm_lane(job: dict[str, Any]) -> bool:
    called = str(job.get("uses", ""))
    if called.startswith("./.github/workflows/"):
        return any(runs_the_vm_lane(inner) for inner in load(REPO_ROOT / called.removeprefix("./"))["jobs"].values())
    lanes = [entry.get("lane") for entry in job.get("strategy", {}).get("matrix", {}).get("include", [])]
    return "vm" in lanes or any("test.sh vm" in str(step.get("run", "")) for step in job.get("steps", []))


def waiting_for_the_vm_lane(jobs: dict[str, Any]) -> list[str]:
    vm_jobs = {name for name, job in jobs.items() if runs_the_vm_lane(job)}
    return sorted(name for name in jobs if needed(jobs, name) & vm_jobs)


def test_pull_request_checks_never_wait_for_the_vm_lane_which_still_runs() -> None:
    jobs = load(WORKFLOWS / "pull-request.yml")["jobs"]
    assert runs_the_vm_lane(jobs["tests"])  # the VM lane still runs on every pull request: it gates merging
    assert waiting_for_the_vm_lane(jobs) == []
    # ... while a render that waited for the tests would be caught.
    seeded = {**jobs, "render": {**jobs["render"], "needs": ["stacks", "tests"]}}
    assert waiting_for_the_vm_lane(seeded) == ["render"]


def step_commands(job: dict[str, Any]) -> list[str]:
    return [str(step.get("run", "")) for step in job["steps"]]


def test_pull_requests_render_every_stack_offline_and_upload_it_without_credentials() -> None:
    jobs = load(WORKFLOWS / "pull-request.yml")["jobs"]
    render = jobs["render"]
    assert render["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.names) }}"
    commands = step_commands(render)
    # Rendered and compared with the base branch's render, the diff on the run's page.
    (compare,) = [c for c in commands if '.venv/bin/python -m offline_render --stack "$STACK"' in c]
    assert '--compare "origin/$BASE_REF"' in compare and '"$GITHUB_STEP_SUMMARY"' in compare
    assert '.venv/bin/python -m policy.offline --stack "$STACK"' in commands
    (upload,) = [s for s in render["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "build/${{ matrix.stack }}/"
    assert reach(render) == []


def calls(jobs: dict[str, Any], command: str, stack: str) -> str:
    (name,) = [
        name
        for name, job in jobs.items()
        if job.get("uses") == "./.github/workflows/pulumi.yml"
        and (job["with"]["command"], job["with"]["stack"]) == (command, stack)
    ]
    return name


def road_problems(workflow: dict[Any, Any]) -> list[str]:
    """How the merge workflow breaks the road staging -> approval -> prod."""
    jobs = workflow["jobs"]
    problems = []
    staging, prod, preview = calls(jobs, "up", "staging"), calls(jobs, "up", "prod"), calls(jobs, "preview", "prod")
    environments = {name: jobs[name]["with"]["environment"] for name in (staging, prod, preview)}
    if staging not in needed(jobs, prod):
        problems.append(f"{prod} does not wait for {staging}")
    if "if" in jobs[prod]:
        problems.append(f"{prod} has a condition ({jobs[prod]['if']}): it could run although staging failed")
    if len(set(environments.values())) != 3:
        problems.append(f"the stacks share an environment: {environments}")
    if environments[prod] != "production":
        problems.append(f"{prod} runs in {environments[prod]}, not production (its required reviewers)")
    if waiting_for_the_vm_lane({name: jobs[name] for name in needed(jobs, preview) | {preview}}):
        problems.append(f"{preview} waits for the VM lane")
    return problems


def test_merges_go_to_staging_then_after_approval_to_prod_each_in_its_own_environment() -> None:
    workflow = load(WORKFLOWS / "deploy.yml")
    assert workflow[True] == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert road_problems(workflow) == []


def test_a_prod_update_that_skips_staging_or_shares_its_environment_is_caught() -> None:
    workflow = load(WORKFLOWS / "deploy.yml")
    jobs = workflow["jobs"]
    skipping = {**jobs, "up-prod": {**jobs["up-prod"], "needs": ["preview-prod"]}}
    assert road_problems({**workflow, "jobs": skipping}) == ["up-prod does not wait for up-staging"]
    forced = {**jobs, "up-prod": {**jobs["up-prod"], "if": "always()"}}
    assert road_problems({**workflow, "jobs": forced}) == [
        "up-prod has a condition (always()): it could run although staging failed"
    ]
    shared = {
        **jobs,
        "up-staging": {**jobs["up-staging"], "with": {**jobs["up-staging"]["with"], "environment": "production"}},
    }
    (problem,) = road_problems({**workflow, "jobs": shared})
    assert problem.startswith("the stacks share an environment")
    slow = {**jobs, "preview-prod": {**jobs["preview-prod"], "needs": "tests"}}
    assert road_problems({**workflow, "jobs": slow}) == ["preview-prod waits for the VM lane"]


def test_the_stack_jobs_take_role_and_secrets_from_their_environment_only() -> None:
    (job,) = load(WORKFLOWS / "pulumi.yml")["jobs"].values()
    assert job["environment"] == {"name": "${{ inputs.environment }}"}
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (setup,) = [s for s in job["steps"] if s.get("uses") == "./.github/actions/pulumi-setup"]
    assert setup["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    # Nothing passes repository secrets down: only the environment's reach the called job.
    for name, caller in load(WORKFLOWS / "deploy.yml")["jobs"].items():
        assert "secrets" not in caller, name


def shipping(jobs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """stack -> (job, environment) of each job shipping a release."""
    return {
        job["with"]["stack"]: (name, job["with"]["environment"])
        for name, job in jobs.items()
        if job.get("uses") == "./.github/workflows/ship-release.yml"
    }


def release_road_problems(jobs: dict[str, Any]) -> list[str]:
    ships = shipping(jobs)
    (staging, staging_environment), (prod, prod_environment) = ships["staging"], ships["prod"]
    problems = []
    if staging not in needed(jobs, prod) or "if" in jobs[prod]:
        problems.append(f"{prod} may ship before {staging} shipped and verified")
    if (staging_environment, prod_environment) != ("staging", "production"):
        problems.append(f"environments {staging_environment}, {prod_environment}")
    return problems


def test_an_app_release_is_built_without_credentials_then_shipped_to_staging_then_prod() -> None:
    workflow = load(WORKFLOWS / "release.yml")
    assert events(workflow) == {"workflow_dispatch"}
    jobs = workflow["jobs"]
    assert reach(jobs["build"]) == []
    assert 'bash scripts/build-release.sh "$RELEASE"' in step_commands(jobs["build"])
    assert release_road_problems(jobs) == []
    # One queue with the stack updates: an app deploy never overlaps a `pulumi up`.
    assert workflow["concurrency"] == load(WORKFLOWS / "deploy.yml")["concurrency"]
    skipping = {**jobs, "prod": {**jobs["prod"], "needs": "build"}}
    assert release_road_problems(skipping) == ["prod may ship before staging shipped and verified"]
    (ship,) = load(WORKFLOWS / "ship-release.yml")["jobs"].values()
    commands = step_commands(ship)
    assert '.venv/bin/python -m ops deploy --stack "$STACK" --region "$REGION" --release "$RELEASE"' in commands
    assert '.venv/bin/python -m ops verify --stack "$STACK" --region "$REGION"' in commands


def test_the_ship_job_reads_where_releases_go_from_the_stack_file() -> None:
    assert release_location("prod") == ("eu-west-1", "s3://example-django-stack-releases/releases/")
