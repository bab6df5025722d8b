"""A release artifact that is not the one recorded beside it never runs: the booted stack's own
app-release.service, pointed at an artifact swapped in S3 (or one without its checksum), fails
with the two digests and leaves the running release active and nothing new installed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from e2e_harness.deployment import Deployment, with_extra_member
from e2e_harness.machine import SimulatedMachine
from e2e_harness.units import parse_env_file

from userdata import layout


@pytest.fixture()
def machine(running: Deployment) -> Iterator[SimulatedMachine]:
    """The first worker, with the live release parameter put back after the test."""
    worker = running.by_role(layout.WORKER_ROLE)[0]
    yield worker
    running.store.put_release(release_env(worker)["RELEASE_PARAMETER"], running.release)


def release_env(machine: SimulatedMachine) -> dict[str, str]:
    return parse_env_file(machine.host_path(layout.RELEASE_ENV).read_text())


def boot_release(running: Deployment, machine: SimulatedMachine, release: str) -> str:
    """Records `release` as the live one and runs the machine's app-release.service; returns the
    unit's failure (it must fail)."""
    running.store.put_release(release_env(machine)["RELEASE_PARAMETER"], release)
    with pytest.raises(RuntimeError) as failed:
        machine.run_oneshot(layout.RELEASE_UNIT)
    return str(failed.value)


def assert_nothing_changed(running: Deployment, machine: SimulatedMachine, release: str) -> None:
    assert os.readlink(machine.host_path(layout.APP_CURRENT)) == f"releases/{running.release}"
    assert not machine.host_path(f"{layout.RELEASES_DIR}/{release}").exists()


def test_a_tampered_artifact_fails_the_release_unit_and_keeps_the_running_release(
    running: Deployment, machine: SimulatedMachine
) -> None:
    env = release_env(machine)
    s3, bucket, prefix = running.store.client("s3"), env["ARTIFACT_BUCKET"], env["ARTIFACT_PREFIX"]
    key = f"{prefix}{running.release}.tar.gz"
    genuine = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    recorded = s3.get_object(Bucket=bucket, Key=f"{key}.sha256")["Body"].read().decode()
    tampered = "tampered-1"
    s3.put_object(Bucket=bucket, Key=f"{prefix}{tampered}.tar.gz", Body=with_extra_member(genuine, "src/x.py", b"1"))
    # The recorded digest of the genuine build, under the tampered release's name.
    s3.put_object(Bucket=bucket, Key=f"{prefix}{tampered}.tar.gz.sha256", Body=recorded.encode())

    failure = boot_release(running, machine, tampered)
    expected = recorded.split()[0]
    lines = [line for line in failure.splitlines() if line.startswith(f"app-release: release {tampered}: ")]
    assert len(lines) == 1, failure
    assert f"its checksum file says {expected}; not installed" in lines[0]
    assert lines[0].split("artifact sha256 ")[1][:64] != expected
    assert_nothing_changed(running, machine, tampered)


def test_an_artifact_without_its_checksum_fails_the_release_unit_and_keeps_the_running_release(
    running: Deployment, machine: SimulatedMachine
) -> None:
    env = release_env(machine)
    s3, bucket, prefix = running.store.client("s3"), env["ARTIFACT_BUCKET"], env["ARTIFACT_PREFIX"]
    genuine = s3.get_object(Bucket=bucket, Key=f"{prefix}{running.release}.tar.gz")["Body"].read()
    unchecked = "unchecked-1"
    s3.put_object(Bucket=bucket, Key=f"{prefix}{unchecked}.tar.gz", Body=genuine)

    failure = boot_release(running, machine, unchecked)
    assert (
        f"app-release: release {unchecked}: cannot read its checksum s3://{bucket}/{prefix}{unchecked}.tar.gz.sha256"
        in failure
    )
    assert_nothing_changed(running, machine, unchecked)
