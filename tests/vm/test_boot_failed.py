"""Issue 21.5 in a real boot: a worker whose live release names an artifact S3 does not have.
app-release.service fails; its OnFailure= starts the program's app-boot-failed@app-release.service
as rendered, which says why, waits for the CloudWatch agent (60 s at most), then calls Auto Scaling's
SetInstanceHealth for its own instance (id from IMDSv2, credentials from the instance role) on
the guest's Auto Scaling stand-in, over the endpoint the other units use. Before that it writes
the release unit's lines again under its name, once the CloudWatch agent runs."""

from __future__ import annotations

import pytest

from tests.machine_scripts import script_literals
from tests.vm.conftest import FAILED_BOOT, MISSING_RELEASE
from userdata.layout import RELEASE_UNIT
from userdata.render import BOOT_FAILURE_REPORT_DELAY_SECONDS

HANDLER = "app-boot-failed@app-release.service"
# How long the handler lets the CloudWatch agent run before it writes the lines, as shipped.
AGENT_START_SECONDS = script_literals("app-boot-failed", "AGENT_START_SECONDS")["AGENT_START_SECONDS"]


@pytest.mark.boots(FAILED_BOOT)
def test_a_worker_with_a_missing_artifact_reports_itself_unhealthy_to_auto_scaling(booted):
    boot = booted(FAILED_BOOT)
    assert boot.first("ready")["all_active"] is False
    report = boot.first("boot-failed")
    release = report["release"]
    assert release["state"] == "failed", report
    assert any(MISSING_RELEASE in line for line in release["journal"]), release["journal"]
    assert report["ended"] and list(report["handlers"]) == [HANDLER], report
    handler = report["handlers"][HANDLER]
    assert (handler["state"], handler["result"]) == ("inactive", "success"), handler
    said = "\n".join(handler["journal"])
    assert f"app-boot-failed: {RELEASE_UNIT.removesuffix('.service')} failed" in said, said
    assert f"reported {boot.instance_id} Unhealthy" in said, said
    calls = [r for r in boot.first("aws-requests") if r["service"] == "autoscaling"]
    health = [r for r in calls if r["action"] == "SetInstanceHealth"]
    assert len(health) == 1 and health[0]["status"] == 200, calls
    params = health[0]["params"]
    assert (params["InstanceId"], params["HealthStatus"], params["ShouldRespectGracePeriod"]) == (
        boot.instance_id,
        "Unhealthy",
        "false",
    ), params
    # The units start beside the agents' installs: the release's lines were written again, by the
    # handler, under the release unit's name, once the CloudWatch agent (whose journald input
    # starts at the journal's end) had run its start-up time, and at least 10 s (two of its
    # shipping intervals) before the instance was reported; the report did not wait out the
    # rendered longest wait, which is for a boot without the agent.
    repeated = release["repeated"]
    assert any(MISSING_RELEASE in entry["message"] for entry in repeated), repeated
    # Written by the handler's own process (journald names the writer's unit from its cgroup).
    assert {entry["writer"] for entry in repeated} == {HANDLER}, repeated
    agent_started = report["log_agent_active_us"]
    assert agent_started > 0, report
    written = sorted(int(entry["monotonic_us"]) / 1e6 for entry in repeated)
    reported = health[0]["monotonic"]
    assert agent_started / 1e6 + AGENT_START_SECONDS <= written[0], (agent_started, written)
    assert written[-1] + 10 <= reported, (written, reported)
    waited = reported - release["failed_monotonic_us"] / 1e6
    assert waited < BOOT_FAILURE_REPORT_DELAY_SECONDS, waited
