"""Boot what we ship: each role's user-data, rendered by the program, applied by cloud-init in a
real Debian 12 VM under real systemd (see docs/vm.md and the boots listed in conftest.py). One
boot serves every test that reads it; the results come from the guest probe's console lines."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

import pytest

from scripts.vm import boot as harness
from scripts.vm import image as vm_image
from tests.vm.conftest import ALL_BOOTS, FAILED_BOOT, ROLE_BOOTS
from userdata.layout import RELEASE_UNIT, SECRETS_UNIT, SSM_AGENT_UNIT, TERMINATION_HOOK, WARM_STOP_UNIT
from userdata.render import enabled_units

ROLES = ROLE_BOOTS
REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "userdata/templates/sandbox.conf"
LONG_RUNNING = {
    "web": ["gunicorn.service"],
    "worker-beat": ["celery-worker-default.service", "celery-worker-long.service", "celery-beat.service"],
    "worker": ["celery-worker-default.service", "celery-worker-long.service"],
}
ONESHOTS = ["app-release.service", "app-secrets.service", "app-release-command.service"]
# Root agents beside the app units (same sandbox, not User=app): workers hold their termination
# lifecycle hook until the Celery units have stopped warm.
AGENTS = {"web": [], "worker-beat": ["app-warm-stop.service"], "worker": ["app-warm-stop.service"]}
# Timers the user-data enables: the Beat instance publishes the queue backlog every minute (its
# service, app-queue-metrics.service, is started by the timer, not enabled itself).
TIMERS = {"web": [], "worker-beat": ["app-queue-metrics.timer"], "worker": []}


def sandbox_directives() -> dict[str, str]:
    """The shared sandbox every unit includes, as `Key: value` (SystemCallFilter lines merged)."""
    directives: dict[str, str] = {}
    for line in SANDBOX.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            directives[key] = f"{directives[key]} {value}".strip() if key in directives else value
    return directives


def hardening_mismatches(properties: dict[str, str]) -> list[str]:
    """Each sandbox directive compared with what `systemctl show` reports for the loaded unit."""
    problems = []
    for key, wanted in sandbox_directives().items():
        shown = properties.get(key)
        if key == "SystemCallFilter":
            allowed = set((shown or "").split())
            # @system-service minus @privileged and @resources: `read` stays, `reboot`, `swapon`
            # (@privileged) and `setrlimit` (@resources) are gone.
            ok = "read" in allowed and not allowed & {"reboot", "swapon", "setrlimit"}
        elif key == "SystemCallErrorNumber":
            ok = shown in ("EPERM", "1")
        elif key == "RestrictAddressFamilies":
            ok = set((shown or "").split()) == set(wanted.split())
        else:
            # `systemctl show` leaves out properties whose value is empty.
            ok = (shown or "") == wanted
        if not ok:
            problems.append(f"{key}: unit file says {wanted!r}, systemd reports {shown!r}")
    return problems


@pytest.mark.parametrize("name", ALL_BOOTS)
def test_cloud_init_applies_the_user_data_cleanly(name, booted):
    report = booted(name).first("cloud-init")
    assert report["rc"] == 0, report
    assert "status: done" in report["status"], report["status"]
    assert report["problems"] == [], "\n".join(report["problems"])


@pytest.mark.parametrize("role", ROLES)
def test_every_unit_of_the_role_is_active_and_beat_only_on_the_tagged_worker(role, booted, rendered):
    user_data, tags = rendered[role]
    boot = booted(role)
    expected = enabled_units(user_data)
    assert sorted(expected) == sorted(ONESHOTS + AGENTS[role] + LONG_RUNNING[role] + TIMERS[role])
    assert boot.first("ready")["all_active"] is True
    states = boot.first("units")
    assert {unit: states[unit] for unit in expected} == {unit: "active" for unit in expected}
    beat_expected = tags.get("celery-beat") == "true"
    assert beat_expected == (role == "worker-beat")
    assert (states["celery-beat.service"] == "active") == beat_expected, states
    if role == "web":
        assert all(states[u] != "active" for u in states if u.startswith("celery-")), states
    else:
        assert states["gunicorn.service"] != "active", states


@pytest.mark.parametrize("role", ROLES)
def test_systemd_enforces_the_hardening_of_every_unit(role, booted):
    # A timer carries no sandbox: what it starts does (systemd-analyze security on it: e2e lane).
    shown = {report["unit"]: report for report in booted(role).all("show") if report["unit"].endswith(".service")}
    assert sorted(shown) == sorted(ONESHOTS + AGENTS[role] + LONG_RUNNING[role])
    for unit, report in shown.items():
        assert hardening_mismatches(report["properties"]) == [], unit
    for unit in LONG_RUNNING[role]:
        process = shown[unit]["process"]
        assert shown[unit]["properties"]["User"] == "app", unit
        assert process["Uid"].split()[0] != "0", (unit, process)
        assert process["NoNewPrivs"] == "1" and process["Seccomp"] == "2", (unit, process)
        assert int(process["CapBnd"], 16) == 0 and int(process["CapEff"], 16) == 0, (unit, process)


@pytest.mark.parametrize("role", ROLES)
def test_redis_answers_only_over_tls_with_the_token(role, booted):
    report = booted(role).first("redis")
    assert report["auth_ping"] == "PONG", report
    assert "NOAUTH" in report["anonymous_ping"], report


@pytest.mark.boots("web")
def test_web_serves_django_and_enqueues_over_tls_with_auth(booted, stack):
    report = booted("web").first("web")
    assert report["healthz"]["status"] == 200, report
    assert report["healthz"]["body"] == {"status": "ok", "release": stack.store.release}, report
    assert report["enqueue"]["status"] == 202, report
    assert report["enqueue"]["body"]["task_id"] in report["queued_messages"], report


@pytest.mark.parametrize("role", ["worker-beat", "worker"])
def test_healthcheck_task_round_trips_from_django(role, booted):
    report = booted(role).first("roundtrip")
    assert report.get("result") == "ok", report
    assert report["ledger"] == 1, report


@pytest.mark.boots("worker-beat")
def test_beat_schedules_on_the_tagged_worker(booted):
    assert booted("worker-beat").first("beat")["heartbeats"] >= 1


@pytest.mark.boots("worker")
def test_kill_9_of_the_worker_restarts_it_and_the_task_is_redelivered(booted):
    report = booted("worker").first("restart")
    assert report["started_before_kill"] == 1, report
    assert report["new_pid"] != report["old_pid"] and report["active_after"] == "active", report
    assert int(report["restarts_after"]) == int(report["restarts_before"]) + 1, report
    # Started twice (the killed run and the redelivered one), completed once.
    assert (report["starts"], report["executions"]) == (2, 1), report


@pytest.mark.boots("worker")
def test_systemctl_stop_waits_for_the_running_task(booted):
    report = booted("worker").first("warm-stop")
    assert report["started"] == 1, report
    assert report["stop_rc"] == 0, report
    assert report["executed_when_stop_returned"] == 1, report
    assert report["result"] == "success", report
    assert report["warm_shutdown_logged"], report


@pytest.mark.parametrize("name", [*ALL_BOOTS, FAILED_BOOT])
def test_the_probe_finished_and_the_vm_powered_off(name, booted):
    boot = booted(name)
    assert boot.all("probe-error") == [], boot.all("probe-error")
    assert boot.all("harness-timeout") == []
    assert boot.first("started")["uptime"] < boot.first("done")["uptime"]
    assert boot.first("done") is not None
    assert boot.exit_code == 0, boot.console[-3000:]


def test_a_qemu_whose_probe_does_not_start_in_time_is_stopped_for_another_attempt(image, tmp_path):
    """What boot() does with a guest stuck before basic.target (once in CI: 30 min of an empty
    console): the attempt ends at the startup timeout, qemu killed and its overlay removed. A real
    qemu on the stock image; no guest's probe starts within half a second."""
    result = harness.Boot("silent", "", "", instance_id="i-0silent", autoscaling_group="none")
    seed = harness.make_seed(tmp_path, "#cloud-config\n", "silent", result.instance_id)
    drive = harness.make_data_drive(tmp_path, {})
    overlay = tmp_path / "overlay.qcow2"
    qemu = (image, None, overlay, seed, drive, tmp_path / "console.log", None)

    process, seconds, silent = harness.run_qemu(*qemu, result, timeout=120, startup_timeout=0.5)

    assert silent
    assert process.returncode == -signal.SIGKILL
    assert seconds < 30
    # What it had done when stopped: qemu's CPU, a qcow2 overlay (its tables at least), a console.
    assert silent.cpu_seconds > 0 and silent.disk_bytes > 0 and silent.console_bytes >= 0
    assert silent.describe().startswith(f"{silent.seconds:.0f} s (qemu used ")
    assert not overlay.exists()
    assert result.reports == []


def requested(boot, method: str, key: str) -> bool:
    """Whether the guest's S3 stand-in served `method key` during this boot."""
    return any(
        r["service"] == "s3" and r["method"] == method and r["key"] == key and r["found"]
        for r in boot.first("aws-requests")
    )


def assert_tree_root_owned_and_readable(tree: dict) -> None:
    assert tree["entries"] > 1000, tree  # src/ and a whole venv
    assert tree["not_root_owned"] == [], tree
    assert tree["dirs_not_0755"] == [], tree
    assert tree["files_not_world_readable"] == [], tree


@pytest.mark.parametrize("role", ROLES)
def test_the_release_is_downloaded_from_s3_and_built_at_boot_by_the_unit(role, booted, stack):
    boot = booted(role)
    release, key = stack.store.release, stack.store.artifact_key(stack.store.release)
    report = boot.first("release")
    # The stock image carries no release: the only one is what app-release.service installed.
    assert report["active"] == release and report["installed"] == [release], report
    journal = "\n".join(report["journal"])
    assert f"downloading s3://{key}" in journal and f"installed {release}" in journal, journal
    assert requested(boot, "GET", key), boot.first("aws-requests")


@pytest.mark.parametrize("role", ROLES)
def test_the_release_tree_is_root_owned_and_readable_by_app(role, booted):
    report = booted(role).first("release")
    assert report["modes"] == {"/srv/app": "755", "/srv/app/releases": "755"}, report
    assert_tree_root_owned_and_readable(report["tree"])
    assert report["app_user_imports"] == "ok", report


@pytest.mark.parametrize("role", ROLES)
def test_the_ssm_agent_is_downloaded_installed_and_running(role, booted, stack):
    boot = booted(role)
    report = boot.first("ssm-agent")
    assert report["package"] == "install ok installed 0.0.0-vmtest", report
    assert (report["active"], report["enabled"]) == ("active", "enabled"), report
    assert report["unit_file"] == "/lib/systemd/system/amazon-ssm-agent.service", report
    assert requested(boot, "GET", vm_image.agent_package_key(stack.store.region)), boot.first("aws-requests")


@pytest.mark.boots("web-ami")
def test_the_baked_ami_boots_its_release_without_s3(booted, stack):
    boot = booted("web-ami")
    assert boot.first("ready")["all_active"] is True
    report = boot.first("release")
    assert report["active"] == stack.store.release and report["installed"] == [stack.store.release], report
    assert_tree_root_owned_and_readable(report["tree"])
    assert report["app_user_imports"] == "ok", report
    assert not any(r["service"] == "s3" and r["key"].endswith(".tar.gz") for r in boot.first("aws-requests"))
    assert boot.first("web")["healthz"]["body"] == {"status": "ok", "release": stack.store.release}


@pytest.mark.boots("web")
def test_the_ops_tools_scripts_deploy_the_next_release_in_place(booted):
    report = booted("web").first("deploy")
    assert report["install"]["rc"] == 0, report
    assert report["switch"]["rc"] == 0, report
    assert report["active_after"] == vm_image.NEXT_RELEASE and report["all_active_after"], report
    assert_tree_root_owned_and_readable(report["tree_after"])
    assert report["healthz_after"]["body"] == {"status": "ok", "release": vm_image.NEXT_RELEASE}, report


@pytest.mark.boots("web-replaced")
def test_a_replaced_instance_boots_the_live_release(booted, stack):
    replaced_web = booted("web-replaced")
    assert replaced_web.first("ready")["all_active"] is True
    report = replaced_web.first("release")
    # Same user-data (app.release still the configured one), yet it installs only the live release.
    assert report["active"] == vm_image.NEXT_RELEASE and report["installed"] == [vm_image.NEXT_RELEASE], report
    assert requested(replaced_web, "GET", stack.store.artifact_key(vm_image.NEXT_RELEASE))
    assert replaced_web.first("web")["healthz"]["body"] == {"status": "ok", "release": vm_image.NEXT_RELEASE}


def imds_requests(boot) -> list[dict]:
    """What the guest's IMDS stand-in served, each with the unit whose cgroup asked."""
    return [r for r in boot.first("aws-requests") if r["service"] == "imds"]


def units_given_credentials(boot) -> set[str]:
    return {
        r["unit"]
        for r in imds_requests(boot)
        if r["method"] == "GET"
        and r["path"].startswith("/latest/meta-data/iam/security-credentials/")
        and r["status"] == 200
    }


@pytest.mark.parametrize("role", ROLES)
def test_the_app_units_cannot_reach_imds_and_the_units_that_use_the_role_can(role, booted):
    boot = booted(role)
    report = boot.first("imds")
    # The control: from the probe's cgroup the stand-in answers at that moment.
    assert report["from_probe"] == {"instance_id": boot.instance_id}, report
    assert sorted(report["from_unit"]) == sorted(LONG_RUNNING[role] + AGENTS[role]), report
    for unit in LONG_RUNNING[role]:
        assert "169.254.169.254" in report["ip_address_deny"][unit], report
        assert "instance_id" not in report["from_unit"][unit] and report["from_unit"][unit]["error"], (unit, report)
    for unit in AGENTS[role]:
        assert report["from_unit"][unit] == {"instance_id": boot.instance_id}, (unit, report)
    # At boot, app-secrets and app-release took the role's credentials from IMDS (no other source
    # in the guest); no app unit ever reached it.
    assert {SECRETS_UNIT, RELEASE_UNIT} <= units_given_credentials(boot), imds_requests(boot)
    assert not {r["unit"] for r in imds_requests(boot)} & set(LONG_RUNNING[role]), imds_requests(boot)


@pytest.mark.boots("worker")
def test_a_terminating_worker_stops_warm_then_completes_the_lifecycle_action(booted):
    boot = booted("worker")
    report = boot.first("termination")
    assert report["started"] == 1 and report["agent_before"] == "active", report
    assert report["agent_ended"], report
    assert report["agent"] == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, report
    # The task in flight finished on the stopping worker, once, and nothing is left to redeliver.
    assert (report["starts"], report["executions"], report["message_pending"]) == (1, 1, False), report
    workers = report["workers"]
    assert sorted(workers) == sorted(LONG_RUNNING["worker"]), report
    assert all((w["state"], w["result"]) == ("inactive", "success") for w in workers.values()), report
    # The agent watched the state in IMDS itself, and took the role's credentials there.
    lifecycle_reads = [
        r for r in imds_requests(boot) if r["path"] == "/latest/meta-data/autoscaling/target-lifecycle-state"
    ]
    assert {r["unit"] for r in lifecycle_reads} == {WARM_STOP_UNIT}, lifecycle_reads
    assert WARM_STOP_UNIT in units_given_credentials(boot), imds_requests(boot)
    completions = [
        r
        for r in boot.first("aws-requests")
        if r["service"] == "autoscaling" and r["action"] == "CompleteLifecycleAction"
    ]
    assert len(completions) == 1, completions
    params = completions[0]["params"]
    assert (
        params["LifecycleHookName"],
        params["AutoScalingGroupName"],
        params["InstanceId"],
        params["LifecycleActionResult"],
    ) == (TERMINATION_HOOK, boot.autoscaling_group, boot.instance_id, "CONTINUE"), params
    # Completed only once every Celery unit had stopped.
    assert completions[0]["monotonic"] * 1e6 >= max(w["stopped_monotonic_us"] for w in workers.values()), report


@pytest.mark.parametrize("name", ["web", "web-ami", "web-replaced"])
def test_the_app_sees_its_own_environment_and_secret_parameter(name, booted):
    boot = booted(name)
    assert boot.first("web")["app_settings"] == {
        "status": 200,
        "body": {
            "greeting": harness.SAMPLE_GREETING,
            "apiKeySha256": hashlib.sha256(harness.SAMPLE_API_KEY.encode()).hexdigest(),
        },
    }
    fetched = [r for r in boot.first("aws-requests") if r["service"] == "ssm" and r["action"] == "GetParameters"]
    assert any(harness.SAMPLE_API_KEY_PARAMETER in r["names"] for r in fetched), fetched


def signing_fingerprint(armored_key: str) -> str:
    """The primary key fingerprint of the image's throwaway signing key (as gpgv's VALIDSIG ends)."""
    shown = subprocess.run(
        ["gpg", "--show-keys", "--with-colons"], input=armored_key, capture_output=True, text=True, check=True
    ).stdout
    return next(line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:"))


@pytest.mark.parametrize("role", ROLES)
def test_both_agents_are_installed_after_a_good_signature_check(role, booted, image, stack):
    boot = booted(role)
    report = boot.first("log-agent")
    signer = signing_fingerprint(image.agent_keyring)
    verdicts = [line for line in report["installer"] if "signature" in line or "not installed" in line]
    expected = [f"install-aws-agent: {p}: good signature from {signer}" for p in vm_image.AGENT_PACKAGES]
    assert verdicts == expected, report
    assert boot.first("ssm-agent")["package"] == report["package"] == "install ok installed 0.0.0-vmtest", report
    assert (report["active"], report["enabled"]) == ("active", "enabled"), report
    assert report["config_fetched"] is True, report
    for package in vm_image.AGENT_PACKAGES:
        key = vm_image.agent_package_key(stack.store.region, package)
        assert requested(boot, "GET", key) and requested(boot, "GET", f"{key}.sig"), boot.first("aws-requests")


@pytest.mark.parametrize("role", ROLES)
def test_the_log_agent_config_names_every_unit_and_their_lines_are_there(role, booted):
    boot = booted(role)
    report = boot.first("log-agent")
    collected = report["config"]["logs"]["logs_collected"]
    named = sorted(unit for entry in collected["journald"]["collect_list"] for unit in entry["units"])
    # A timer's lines are those of the service it starts.
    services = [unit.replace(".timer", ".service") for unit in enabled_units(boot.user_data)]
    assert named == sorted([*services, SSM_AGENT_UNIT]), named
    # Every unit's own processes have written to the journal by now (a timer's service once its
    # first run has ended, which the probe waits for); app-warm-stop only speaks when the instance
    # terminates.
    assert report["first_runs_unended"] == [], report["first_runs_unended"]
    assert all(report["lines"][unit] > 0 for unit in named if unit != WARM_STOP_UNIT), report["lines"]
    files = [entry["file_path"] for entry in collected["files"]["collect_list"]]
    # The stand-in SSM agent writes no log file of its own (AWS's writes /var/log/amazon/ssm/).
    assert all(report["lines"][path] > 0 for path in files if "/amazon/ssm/" not in path), report["lines"]
