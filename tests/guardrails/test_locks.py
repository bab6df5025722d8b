"""The hash locks (scripts/lock.sh, pip-compile --generate-hashes): every package pinned with its
hashes, every lock still satisfying what it locks, and every install that runs with AWS
credentials (CI's preview and up jobs) or builds the release installing from a lock with
pip --require-hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ops import build_release
from tests import REPO_ROOT

DEPLOY_LOCK = REPO_ROOT / "requirements" / "deploy.lock"
RELEASE_LOCK = REPO_ROOT / "sample_app" / "requirements.lock"
PULUMI_SETUP = REPO_ROOT / ".github" / "actions" / "pulumi-setup" / "action.yml"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def lock_entries(lock: Path) -> list[str]:
    """The lock's requirement entries, each with its continuation lines (the hashes) joined."""
    text = lock.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for entry in lock_entries(lock):
        requirement = Requirement(entry.split(" --hash")[0])
        (specifier,) = requirement.specifier
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def deploy_inputs() -> list[str]:
    """What requirements/deploy.lock locks: the program's dependencies, the policy pack's SDK and
    the build backend the editable install uses."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    return [
        *project["dependencies"],
        *project["optional-dependencies"]["policy"],
        *pyproject["build-system"]["requires"],
    ]


def release_inputs() -> list[str]:
    lines = (REPO_ROOT / "sample_app" / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("lock", [DEPLOY_LOCK, RELEASE_LOCK], ids=lambda p: p.name)
def test_every_lock_entry_is_one_pinned_version_with_its_hashes(lock: Path) -> None:
    entries = lock_entries(lock)
    assert entries, f"{lock} locks nothing"
    for entry in entries:
        assert not entry.startswith("-"), f"{lock.name}: an option or editable line, which no hash covers: {entry}"
        requirement = Requirement(entry.split(" --hash")[0])
        assert [s.operator for s in requirement.specifier] == ["=="], f"{lock.name}: not pinned: {entry[:80]}"
        assert HASH.findall(entry), f"{lock.name}: {requirement} has no sha256 hash"
        assert len(entry.split()) == 1 + len(HASH.findall(entry)), f"{lock.name}: more than pin and hashes: {entry}"


@pytest.mark.parametrize(
    ("lock", "inputs"), [(DEPLOY_LOCK, deploy_inputs), (RELEASE_LOCK, release_inputs)], ids=["deploy", "release"]
)
def test_each_lock_still_satisfies_what_it_locks(lock: Path, inputs: Any) -> None:
    # A requirement added or narrowed without running scripts/lock.sh fails here, not in CI's install.
    pinned = pins(lock)
    for line in inputs():
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock.name} lacks {requirement}: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock.name} pins {name}=={pinned[name]}, outside {requirement}: run bash scripts/lock.sh"
        )


def credentialed_jobs() -> list[tuple[str, dict[str, Any]]]:
    """Every workflow job that may exchange GitHub's OIDC token for AWS credentials."""
    jobs = []
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        for name, job in yaml.safe_load(workflow.read_text())["jobs"].items():
            if (job.get("permissions") or {}).get("id-token") == "write":
                jobs.append((f"{workflow.name}:{name}", job))
    return jobs


def test_jobs_holding_aws_credentials_install_python_packages_only_from_the_lock() -> None:
    # A job that calls a reusable workflow runs no step itself: its permissions bound the called job's.
    callers = {name: job["uses"] for name, job in credentialed_jobs() if "uses" in job}
    assert set(callers.values()) == {"./.github/workflows/pulumi.yml", "./.github/workflows/ship-release.yml"}
    jobs = [(name, job) for name, job in credentialed_jobs() if "uses" not in job]
    assert {name for name, _ in jobs} == {"pulumi.yml:pulumi", "ship-release.yml:ship"}
    for name, job in jobs:
        steps = job["steps"]
        assert "./.github/actions/pulumi-setup" in [step.get("uses") for step in steps], name
        assert not any("pip" in step.get("run", "") for step in steps), f"{name} runs pip itself"
    runs = [step["run"] for step in yaml.safe_load(PULUMI_SETUP.read_text())["runs"]["steps"] if "run" in step]
    assert runs == ['PYTHON="$(command -v python)" bash scripts/setup.sh deploy']


def pip_commands(script: Path) -> list[str]:
    """Each command line of a shell script that runs pip, continuation lines joined."""
    lines = script.read_text().replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if re.search(r"\bpip\b", line) and not line.lstrip().startswith("#")]


def test_the_deploy_lane_installs_the_lock_with_require_hashes_and_nothing_unhashed() -> None:
    (step,) = (REPO_ROOT / "scripts" / "setup.d").glob("*-deploy.sh")  # what `setup.sh deploy` runs
    commands = pip_commands(step)
    assert "pip=(.venv/bin/pip install -q --disable-pip-version-check)" in commands
    installs = [command for command in commands if command.startswith('"${pip[@]}"')]
    assert installs == [
        '"${pip[@]}" --require-hashes --only-binary :all: -r requirements/deploy.lock',
        # the checkout itself: no dependency, no download, its build backend from the lock
        '"${pip[@]}" --no-deps --no-build-isolation --no-index -e .',
    ]


def test_the_release_build_downloads_its_wheels_from_the_lock_with_require_hashes() -> None:
    script = (REPO_ROOT / "scripts" / "build-release.sh").read_text().replace("\\\n", " ")
    (build,) = [line for line in script.splitlines() if "-m ops build-release" in line and line[:1] != "#"]
    options = build.split()
    assert options[options.index("--requirements") + 1] == "sample_app/requirements.lock"
    assert build_release.is_hash_locked(RELEASE_LOCK.read_text())
    download = build_release.download_command(["pip"], RELEASE_LOCK, Path("wheels"), "x86_64", hashed=True)
    assert "--require-hashes" in download and download[download.index("--only-binary") + 1] == ":all:"
