"""A failed boot heals: app-boot-failed, as the rendered app-boot-failed@.service runs it when
app-release.service fails (its OnFailure=), says why, waits, then reports the instance
Unhealthy to Auto Scaling, which then replaces it. The script is the one shipped in the
user-data, run by Debian's python3 and boto3 with the unit's own environment; its AWS side is
moto's Auto Scaling behind the loopback IMDSv2 stand-in (e2e_harness/autoscaling.py). One
deviation, said here: the report delay is 2 s instead of the rendered 60 s, so the test does
not wait a minute; that the delay is 60 s is checked on the render (tests/test_userdata.py)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from e2e_harness.autoscaling import GROUP, REGION, Standin, worker_group
from e2e_harness.parameter_store import CREDENTIALS

from tests.conftest import kind_of
from userdata.layout import BOOT_FAILED_BIN, BOOT_FAILED_UNIT, RELEASE_UNIT
from userdata.render import UserDataInputs, unit_files
from userdata.shipped import shipped_script

DELAY = 2


@pytest.fixture
def group() -> Iterator[Standin]:
    with worker_group() as standin:
        yield standin


def health(standin: Standin) -> str:
    autoscaling = boto3.client(
        "autoscaling", region_name=REGION, endpoint_url=standin.moto, **{k.lower(): v for k, v in CREDENTIALS.items()}
    )
    (instance,) = autoscaling.describe_auto_scaling_instances(InstanceIds=[standin.instance_id])["AutoScalingInstances"]
    assert instance["AutoScalingGroupName"] == GROUP
    return str(instance["HealthStatus"])


def test_a_worker_whose_release_failed_to_install_is_reported_unhealthy_after_saying_why(
    prod_settings, group: Standin, tmp_path: Path
) -> None:
    units = unit_files(
        UserDataInputs(prod_settings, kind_of(prod_settings, "worker"), redis_host="r.example", redis_port=6379)
    )
    on_failure = re.search(r"^OnFailure=(.*)$", units[RELEASE_UNIT], re.MULTILINE).group(1)  # type: ignore[union-attr]
    instance = on_failure.replace("%N", RELEASE_UNIT.removesuffix(".service")).split("@")[1].removesuffix(".service")
    handler = units[BOOT_FAILED_UNIT]
    environment = dict(
        word.split("=", 1) for word in re.search(r"^Environment=(.*)$", handler, re.MULTILINE).group(1).split()
    )  # type: ignore[union-attr]
    argv = re.search(r"^ExecStart=(.*)$", handler, re.MULTILINE).group(1).replace("%i", instance).split()  # type: ignore[union-attr]
    script = tmp_path / "app-boot-failed"
    script.write_text(shipped_script("app-boot-failed"))
    argv = [str(script) if word == BOOT_FAILED_BIN else word for word in argv]
    assert argv == ["/usr/bin/python3", str(script), "app-release"]
    assert health(group) == "Healthy"

    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        argv,
        env={
            "PATH": "/usr/bin:/bin",
            **environment,
            "REPORT_DELAY_SECONDS": str(DELAY),
            **CREDENTIALS,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": group.url,
            "AWS_ENDPOINT_URL_AUTOSCALING": group.url,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
            if len(lines) == 1:
                assert health(group) == "Healthy"  # said why first; not reported yet
    assert process.returncode == 0, lines
    (said_at, why), (reported_at, reported) = lines
    assert why.startswith("app-boot-failed: app-release failed, so this instance runs no app; reporting it unhealthy")
    assert reported == f"app-boot-failed: reported {group.instance_id} Unhealthy; Auto Scaling replaces it"
    assert reported_at - said_at >= DELAY
    assert health(group) == "Unhealthy"
