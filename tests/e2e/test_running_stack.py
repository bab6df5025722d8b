"""The booted stack does its job: Django publishes over rediss:// with AUTH, workers consume
by queue, Beat ticks once per interval."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

from e2e_harness.deployment import SAMPLE_API_KEY, SAMPLE_GREETING, Deployment, wait_until
from e2e_harness.machine import run_as_root, run_like
from e2e_harness.units import parse_env_file


def url_parts(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.password, parts.hostname, parts.port, parts.path, parse_qs(parts.query)


def test_secret_fetch_wrote_a_verifying_rediss_url_with_the_token(running: Deployment) -> None:
    for machine in running.machines.values():
        secrets = parse_env_file(machine.host_path("/run/app-secrets/secrets.env").read_text())
        assert url_parts(secrets["CELERY_BROKER_URL"]) == url_parts(running.redis.url(0))
        assert url_parts(secrets["CELERY_RESULT_BACKEND"]) == url_parts(running.redis.url(1))


def test_each_machine_booted_the_live_release_through_its_own_unit(running: Deployment) -> None:
    first, *others = running.machines.values()
    assert "app-release: downloading s3://" in first.log("app-release.service")
    assert f"app-release: {running.release} is active" in first.log("app-release.service")
    for machine in others:  # /srv/app is shared by the run's machines: the rest found it active
        assert f"{running.release} (the live release) is active" in machine.log("app-release.service")


def test_the_release_tree_is_root_owned_and_readable_by_the_app_user(running: Deployment) -> None:
    # Asked as the app user itself (gunicorn.service's User=): anything it cannot read, or a
    # directory it cannot enter, is printed; find also fails on a directory it cannot list.
    cannot = run_like(
        running.web,
        "gunicorn.service",
        ["/usr/bin/find", "/srv/app/", "(", "!", "-readable", "-o", "-type", "d", "!", "-executable", ")", "-print"],
    )
    assert (cannot.returncode, cannot.stdout, cannot.stderr) == (0, "", "")
    not_root = run_as_root(running.web, ["/usr/bin/find", "/srv/app/", "!", "-user", "root", "-print"])
    assert (not_root.returncode, not_root.stdout) == (0, "")


def test_healthz_answers_through_gunicorn_after_pinging_the_broker(running: Deployment) -> None:
    status, body = running.http("GET", "/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "release": running.release}


def test_the_load_balancers_liveness_path_answers_through_gunicorn(running: Deployment) -> None:
    status, body = running.http("GET", "/livez")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "release": running.release}


def test_the_app_reads_its_own_environment_and_secret_parameter(running: Deployment) -> None:
    # app.environment reached app.env; app.secretParameters was fetched at boot from Parameter
    # Store by app-fetch-secrets into the secrets file, and gunicorn's Django sees both.
    status, body = running.http("GET", "/app-settings")
    assert status == 200
    assert json.loads(body) == {
        "greeting": SAMPLE_GREETING,
        "apiKeySha256": hashlib.sha256(SAMPLE_API_KEY.encode()).hexdigest(),
    }
    for machine in running.machines.values():
        secrets = parse_env_file(machine.host_path("/run/app-secrets/secrets.env").read_text())
        assert secrets["SAMPLE_API_KEY"] == SAMPLE_API_KEY
        assert "SAMPLE_API_KEY" not in machine.host_path("/etc/app/app.env").read_text()


def test_gunicorn_starts_without_errors(running: Deployment) -> None:
    log = running.web.log("gunicorn.service")
    assert "Booting worker" in log
    assert "[ERROR]" not in log, log[-3000:]


def test_healthcheck_enqueued_from_django_runs_and_returns_its_result(running: Deployment) -> None:
    # Out over TLS + AUTH to the broker, run by a worker, result back through the result backend.
    result = running.django("from myapp.tasks import healthcheck_task; print(healthcheck_task.delay().get(timeout=30))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok"


def test_healthcheck_enqueued_over_http_is_executed_once(running: Deployment) -> None:
    status, body = running.http("POST", "/tasks/healthcheck")
    assert status == 202
    task_id = json.loads(body)["task_id"]
    wait_until(lambda: running.ledger().hget("ledger:healthcheck", task_id), timeout=30)
    assert running.ledger().hget("ledger:healthcheck", task_id) == b"1"


def test_celery_inspect_ping_answers_for_every_worker_unit(running: Deployment) -> None:
    expected = running.worker_names()
    assert len(expected) == 4  # default and long on each of the two worker machines
    assert running.ping_workers() == expected


def test_reports_run_only_on_long_queue_workers(running: Deployment) -> None:
    code = "from myapp.tasks import generate_report\nfor n in range(6): generate_report.delay(f'routing-{n}', 0.2)"
    assert running.django(code).returncode == 0
    keys = [f"routing-{n}" for n in range(6)]
    wait_until(lambda: all(running.ledger().hget("ledger:report", key) for key in keys), timeout=60)
    workers = {json.loads(e)["worker"] for e in running.ledger().lrange("ledger:report:log", 0, -1)}
    assert workers and all(worker.startswith("long@") for worker in workers), workers


def test_beat_fires_the_heartbeat_once_per_tick(running: Deployment) -> None:
    interval = 5.0  # sample_app/proj/settings/base.py BEAT_HEARTBEAT_SECONDS
    window_start = time.time()
    time.sleep(4 * interval + 1)
    # A heartbeat redelivered after a fault (same task id) is not a second tick: count what Beat
    # sent, i.e. distinct task ids, each at its first run.
    first_run: dict[str, float] = {}
    for raw in running.ledger().lrange("ledger:beat:log", 0, -1):
        entry = json.loads(raw)
        if entry["at"] >= window_start:
            first_run.setdefault(entry["key"], entry["at"])
    ticks = sorted(first_run.values())
    assert 4 <= len(ticks) <= 5, ticks
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    # One run per tick: no two runs closer than most of an interval, none missing in between.
    assert min(gaps) > 0.6 * interval and max(gaps) < 1.6 * interval, gaps
