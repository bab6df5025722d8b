"""Boot what we ship: each role's user-data, rendered by the program, applied by cloud-init in a
real Debian 12 VM under real systemd (see docs/vm.md). One boot per role serves every test of
that role; the results come from the guest probe's console lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from userdata.render import enabled_units

ROLES = ("web", "worker-beat", "worker")
REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "userdata/templates/sandbox.conf"
LONG_RUNNING = {
    "web": ["gunicorn.service"],
    "worker-beat": ["celery-worker-default.service", "celery-worker-long.service", "celery-beat.service"],
    "worker": ["celery-worker-default.service", "celery-worker-long.service"],
}
ONESHOTS = ["app-release.service", "app-secrets.service"]


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


@pytest.mark.parametrize("role", ROLES)
def test_cloud_init_applies_the_user_data_cleanly(role, booted):
    report = booted(role).first("cloud-init")
    assert report["rc"] == 0, report
    assert "status: done" in report["status"], report["status"]
    assert report["problems"] == [], "\n".join(report["problems"])


@pytest.mark.parametrize("role", ROLES)
def test_every_unit_of_the_role_is_active_and_beat_only_on_the_tagged_worker(role, booted, rendered):
    user_data, tags = rendered[role]
    boot = booted(role)
    expected = enabled_units(user_data)
    assert sorted(expected) == sorted(ONESHOTS + LONG_RUNNING[role])
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
    shown = {report["unit"]: report for report in booted(role).all("show")}
    assert sorted(shown) == sorted(ONESHOTS + LONG_RUNNING[role])
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


def test_web_serves_django_and_enqueues_over_tls_with_auth(booted):
    report = booted("web").first("web")
    assert report["healthz"]["status"] == 200, report
    assert report["healthz"]["body"]["status"] == "ok", report
    assert report["enqueue"]["status"] == 202, report
    assert report["enqueue"]["body"]["task_id"] in report["queued_messages"], report


@pytest.mark.parametrize("role", ["worker-beat", "worker"])
def test_healthcheck_task_round_trips_from_django(role, booted):
    report = booted(role).first("roundtrip")
    assert report.get("result") == "ok", report
    assert report["ledger"] == 1, report


def test_beat_schedules_on_the_tagged_worker(booted):
    assert booted("worker-beat").first("beat")["heartbeats"] >= 1


def test_kill_9_of_the_worker_restarts_it_and_the_task_is_redelivered(booted):
    report = booted("worker").first("restart")
    assert report["started_before_kill"] == 1, report
    assert report["new_pid"] != report["old_pid"] and report["active_after"] == "active", report
    assert int(report["restarts_after"]) == int(report["restarts_before"]) + 1, report
    # Started twice (the killed run and the redelivered one), completed once.
    assert (report["starts"], report["executions"]) == (2, 1), report


def test_systemctl_stop_waits_for_the_running_task(booted):
    report = booted("worker").first("warm-stop")
    assert report["started"] == 1, report
    assert report["stop_rc"] == 0, report
    assert report["executed_when_stop_returned"] == 1, report
    assert report["result"] == "success", report
    assert report["warm_shutdown_logged"], report


@pytest.mark.parametrize("role", ROLES)
def test_the_probe_finished_and_the_vm_powered_off(role, booted):
    boot = booted(role)
    assert boot.all("probe-error") == [], boot.all("probe-error")
    assert boot.all("harness-timeout") == []
    assert boot.first("done") is not None
    assert boot.exit_code == 0, boot.console[-3000:]
