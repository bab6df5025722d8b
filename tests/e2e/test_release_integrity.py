"""A release artifact that is not the one recorded beside it never runs: the booted stack's own
app-release.service, pointed at an artifact swapped in S3 (or one without its checksum), fails
with the two digests and leaves the running release active and nothing new installed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

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


def release_bucket(running: Deployment, machine: SimulatedMachine) -> tuple[Any, str, str, bytes]:
    """The S3 client, bucket and prefix the machine downloads from, and the running release's
    artifact there."""
    env = release_env(machine)
    s3, bucket, prefix = running.store.client("s3"), env["ARTIFACT_BUCKET"], env["ARTIFACT_PREFIX"]
    return s3, bucket, prefix, s3.get_object(Bucket=bucket, Key=f"{prefix}{running.release}.tar.gz")["Body"].read()


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
    assert f"expected {expected}; not installed" in lines[0]
    assert lines[0].split("artifact sha256 ")[1][:64] != expected
    assert_nothing_changed(running, machine, tampered)


def test_an_artifact_without_its_checksum_fails_the_release_unit_and_keeps_the_running_release(
    running: Deployment, machine: SimulatedMachine
) -> None:
    s3, bucket, prefix, genuine = release_bucket(running, machine)
    unchecked = "unchecked-1"
    s3.put_object(Bucket=bucket, Key=f"{prefix}{unchecked}.tar.gz", Body=genuine)

    failure = boot_release(running, machine, unchecked)
    assert (
        f"app-release: release {unchecked}: cannot read its checksum s3://{bucket}/{prefix}{unchecked}.tar.gz.sha256"
        in failure
    )
    assert_nothing_changed(running, machine, unchecked)


# --- the live release pins the artifact's digest (docs/release-digest.md) ----------------------


def test_an_artifact_replaced_with_its_checksum_is_refused_when_the_live_release_pins_its_digest(
    running: Deployment, machine: SimulatedMachine
) -> None:
    s3, bucket, prefix, genuine = release_bucket(running, machine)
    pinned, release = hashlib.sha256(genuine).hexdigest(), "replaced-1"
    # The release deploy recorded with its digest; then both files in the bucket are replaced by a
    # consistent pair, the checksum beside the artifact matching the replaced artifact.
    replaced = with_extra_member(genuine, "src/x.py", b"1")
    s3.put_object(Bucket=bucket, Key=f"{prefix}{release}.tar.gz", Body=replaced)
    beside = f"{hashlib.sha256(replaced).hexdigest()}  {release}.tar.gz\n"
    s3.put_object(Bucket=bucket, Key=f"{prefix}{release}.tar.gz.sha256", Body=beside.encode())

    failure = boot_release(running, machine, f"{release}@sha256:{pinned}")
    lines = [line for line in failure.splitlines() if line.startswith(f"app-release: release {release}: ")]
    assert lines == [
        f"app-release: release {release}: artifact sha256 {hashlib.sha256(replaced).hexdigest()}, "
        f"expected {pinned}; not installed"
    ], failure
    assert_nothing_changed(running, machine, release)


def test_the_running_release_boots_under_its_pinned_digest_without_a_warning(
    running: Deployment, machine: SimulatedMachine
) -> None:
    genuine = hashlib.sha256(release_bucket(running, machine)[3]).hexdigest()
    running.store.put_release(release_env(machine)["RELEASE_PARAMETER"], f"{running.release}@sha256:{genuine}")
    before = len(machine.log(layout.RELEASE_UNIT))
    machine.run_oneshot(layout.RELEASE_UNIT)  # a reboot once a deploy pinned the running release
    rebooted = machine.log(layout.RELEASE_UNIT)[before:]
    assert f"app-release: {running.release} (the live release) is active" in rebooted
    assert "WARNING" not in rebooted
    assert (machine.host_path(f"{layout.RELEASES_DIR}/{running.release}/.installed").read_text().split()[-1]) == genuine
