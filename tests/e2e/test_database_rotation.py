"""A database.mode rds stack rotates its password under load with nothing failing: examples/bookshelf
(Django's pool, as docs/database.md tells users to set it) on a prod render with the stack's own
database, a real PostgreSQL standing in for RDS (TLS from a test CA whose certificate names the RDS
endpoint, which the machines resolve to it; scram password; PostgreSQL's own port), its secret in
moto's Secrets Manager.

At boot the rendered app-database-password.service writes the password file (the CA bundle is
placed beforehand: its pinned download is test_database_password.py's), the rendered release
command migrates, gunicorn and the Celery workers start from their units. Then, while requests hit
the DB-backed page and tasks that write a row run on the workers, the password is rotated as RDS
does it (the database first, then the secret) and the app's pooled sessions are ended again and
again during the window, so each process must open new connections with a password it does not
have yet (only sessions idle for a while, and only while no request is in flight: ending a session
between a request's queries fails it whatever the password). The service's next
run (the timer's, or `ops rotate-db-password`'s) brings it: 0 failed requests, 0 failed tasks.
The control run leaves the refresh out: requests fail (the pool waits its timeout, then gives up)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from e2e_harness.deployment import Deployment, loopback_address, make_base, wait_until
from e2e_harness.example_project import EXAMPLE
from e2e_harness.machine import APP_GID, APP_UID, run_as_root
from e2e_harness.pki import issue_server_cert, make_ca
from e2e_harness.postgres_server import BIN, PostgresServer
from e2e_harness.units import MAX_EXPOSURE, exposure, parse_env_file

from tests.test_rds import PROD_RDS, with_rds
from userdata import layout
from userdata.render import written_files

pytestmark = pytest.mark.xdist_group("database-rotation")

RELEASE_COMMAND = "python manage.py migrate --noinput"
# How long new connections fail before the refresh: the timer runs within a minute and a second;
# the test takes a few seconds (Django's pool waits 20 s, examples/bookshelf/settings.py).
WINDOW_SECONDS = 5
LOAD_AFTER_SECONDS = 12  # load kept up after the refresh, so recovered connections serve too
# Each client's pause between requests: the pools' connections then sit idle long enough to be
# told from one a task is using (IDLE_MS; between a task's queries its session is `idle in
# transaction`, shelf.tasks). Requests are held while sessions are ended (Load.quiet).
REQUEST_PAUSE_SECONDS = 0.3
IDLE_MS = 250
# How long ending sessions waits for the requests in flight to be answered; past it, that round
# ends none (a request waiting in its pool for a connection the password refuses is in flight).
QUIET_WAIT_SECONDS = 1.0


def rendered_url() -> str:
    """DATABASE_URL as the program renders it for prod with its database (the mocks' endpoint)."""
    web = next(i for i in with_rds().instances if i.role == "web")
    (app_env,) = [f.content for f in written_files(web.user_data) if f.path == layout.APP_ENV]
    return parse_env_file(app_env)["DATABASE_URL"]


def rendered_endpoint() -> str:
    return str(urlsplit(rendered_url()).hostname)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Deployment, PostgresServer]]:
    base = make_base()
    pki = base / "pki"
    ca = make_ca(pki, "rds")
    host = loopback_address(83)
    deployment = None
    server = None
    try:
        deployment = Deployment.create(
            app=EXAMPLE,
            app_overrides={"app.module": "bookshelf", "app.settingsModule": "bookshelf.settings"},
            config={
                "database": {**PROD_RDS, "caBundleSha256": hashlib.sha256(ca[0].read_bytes()).hexdigest()},
                "app.releaseCommand": RELEASE_COMMAND,
                # Room in the Beat worker's user-data for the harness's test queues and routes
                # (prod's own config fits: test_rds.py); no agent runs here anyway.
                "logs.agent": "off",
            },
            worker_count=2,
            web_count=1,
            address_salt=84,
            # Room for a task to wait out the window in the pool (the harness's default queues
            # time out in seconds, for its fault tests).
            queues=[{"name": "default", "concurrency": 2, "softTimeLimit": 60, "hardTimeLimit": 70}],
            visibility_timeout=90,
            hosts={rendered_endpoint(): host},
        )
        url = urlsplit(parse_env_file(deployment.web.host_path(layout.APP_ENV).read_text())["DATABASE_URL"])
        assert url.hostname == rendered_endpoint()
        assert url.password is None and url.port is None  # nothing secret; RDS's port is libpq's default
        cert = issue_server_cert(pki, "postgres", ca, host, dns_name=url.hostname)
        server = PostgresServer(host, 5432, cert, base / "postgres", user=url.username)
        server.start()
        server.query(f"CREATE DATABASE {url.path.lstrip('/')}")
        secret = parse_env_file(deployment.web.host_path(layout.SECRETS_SOURCE_ENV).read_text())["DATABASE_SECRET"]
        deployment.store.client("secretsmanager").create_secret(
            Name=secret, SecretString=json.dumps({"username": server.user, "password": server.password})
        )
        # What the instance role's Secrets Manager endpoint is here; boto3 in Debian 12 reads no
        # per-service variable for it.
        deployment.site.instance_environment["AWS_ENDPOINT_URL"] = deployment.store.endpoint
        for machine in deployment.machines.values():
            bundle = machine.host_path(layout.DATABASE_CA_FILE)
            bundle.write_bytes(ca[0].read_bytes())
            os.chown(bundle, APP_UID, APP_GID)
            bundle.chmod(0o600)
        deployment.boot()
        yield deployment, server
    finally:
        if deployment:
            deployment.close()
        if server:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def rotate(server: PostgresServer, deployment: Deployment) -> None:
    """RDS's order: the new password in the database, then in the secret (AWSCURRENT)."""
    password = f"r:{secrets.token_urlsafe(18)}\\"  # ':' and '\\' are escaped in the password file
    server.query(f"ALTER USER {server.user} PASSWORD '{password}'")
    server.password = password
    source = parse_env_file(deployment.web.host_path(layout.SECRETS_SOURCE_ENV).read_text())
    deployment.store.client("secretsmanager").put_secret_value(
        SecretId=source["DATABASE_SECRET"], SecretString=json.dumps({"username": server.user, "password": password})
    )


def end_idle_sessions(server: PostgresServer) -> int:
    """Ends the app's sessions that sit idle in its pools (for over IDLE_MS), so each process must
    connect anew. Called while no request is in flight (Load.quiet): a request's session is idle
    between its queries too, for as long as its process waits for a core, and ending it there
    fails the request whatever the password (one 500 on a loaded machine, 2026-12-04)."""
    return int(
        server.query(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{server.user}' "
            "AND pid <> pg_backend_pid() AND state = 'idle' "
            f"AND state_change < clock_timestamp() - interval '{IDLE_MS} milliseconds'"
        )
    )


def refresh(deployment: Deployment) -> None:
    """app-database-password.service's next run on every machine, as its timer starts it."""
    for machine in deployment.machines.values():
        machine.run_oneshot(layout.DATABASE_PASSWORD_UNIT)


class Load:
    """Requests to the DB-backed page from two clients, and tasks that write a row (through the
    rendered worker units), until stopped; what failed, with why."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.stopping = threading.Event()
        self.requests = 0
        self.failed: list[str] = []
        # Requests start only while the gate is open; in_flight counts those not yet answered.
        self.gate = threading.Event()
        self.gate.set()
        self.in_flight = 0
        self.lock = threading.Lock()
        self.tasks_sent = 0
        self.threads = [threading.Thread(target=self._requests) for _ in range(2)]
        self.threads.append(threading.Thread(target=self._tasks))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    @contextmanager
    def quiet(self) -> Iterator[bool]:
        """Holds new requests back and waits (up to QUIET_WAIT_SECONDS) for the ones in flight to
        be answered; yields whether none is in flight."""
        with self.lock:
            self.gate.clear()
        deadline = time.monotonic() + QUIET_WAIT_SECONDS
        try:
            while self.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
            yield self.in_flight == 0
        finally:
            self.gate.set()

    def _requests(self) -> None:
        while not self.stopping.is_set():
            with self.lock:  # the gate's check and the count in flight, atomic with quiet()'s close
                opened = self.gate.is_set()
                if opened:
                    self.in_flight += 1
            if not opened:
                self.gate.wait(timeout=1)
                continue
            try:
                status, body = self.deployment.http("GET", "/", timeout=60)
            except OSError as error:
                status, body = 0, str(error).encode()
            finally:
                with self.lock:
                    self.in_flight -= 1
            self.requests += 1
            if status != 200:
                self.failed.append(f"{status}: {body[-300:]!r}")
            time.sleep(REQUEST_PAUSE_SECONDS)

    def _tasks(self) -> None:
        worker = self.deployment.by_role(layout.WORKER_ROLE)[0]
        while not self.stopping.is_set():
            sent = self.deployment.celery(worker, "call", "shelf.tasks.take_census", timeout=60)
            if sent.returncode == 0:
                self.tasks_sent += 1
            time.sleep(0.5)


def census(server: PostgresServer) -> int:
    """Rows the census task wrote, in the app's database (the rendered URL's)."""
    database = urlsplit(rendered_url()).path
    done = subprocess.run(
        [
            str(BIN / "psql"),
            server.url().replace("/postgres?", f"{database}?"),
            "-tA",
            "-c",
            "SELECT count(*) FROM shelf_census",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def task_failures(deployment: Deployment) -> list[str]:
    return [
        line
        for machine in deployment.by_role(layout.WORKER_ROLE)
        for unit in machine.units
        if layout.queue_of_worker_unit(unit)
        for line in machine.log(unit).splitlines()
        if "raised unexpected" in line
    ]


def restart_app_units(deployment: Deployment) -> None:
    """After the control run: fresh processes (their pools back off after a long failure)."""
    for machine in deployment.machines.values():
        for unit in [u for u in machine.units if layout.is_app_unit(u)]:
            machine.kill(unit)
            machine.start(unit)
    deployment.wait_for_web()
    deployment.wait_for_workers(deployment.worker_names())


@pytest.mark.parametrize("refreshed", [False, True], ids=["control-without-refresh", "with-refresh"])
def test_a_rotation_under_load_fails_no_request_and_no_task(stack, refreshed: bool) -> None:
    deployment, server = stack
    assert "Applying shelf.0002_seed_books... OK" in "".join(
        m.log(layout.RELEASE_COMMAND_UNIT) for m in deployment.machines.values()
    )
    failed_tasks_before = len(task_failures(deployment))
    rows_before = census(server)
    with Load(deployment) as load:
        time.sleep(3)
        served_before = load.requests
        rotate(server, deployment)
        ended = 0
        window_end = time.monotonic() + (WINDOW_SECONDS if refreshed else 25)  # control: past the pool's timeout
        while time.monotonic() < window_end:  # the pools' connections keep ending: new ones are needed
            with load.quiet() as idle:
                if idle:
                    ended += end_idle_sessions(server)
            time.sleep(0.1)
        assert ended > 0
        if refreshed:
            refresh(deployment)
        time.sleep(LOAD_AFTER_SECONDS)
    if not refreshed:
        refresh(deployment)
        restart_app_units(deployment)
        failed_tasks = len(task_failures(deployment)) - failed_tasks_before
        print(f"without the refresh: {len(load.failed)} of {load.requests} requests and {failed_tasks} tasks failed")
        assert load.failed, f"{load.requests} requests, none failed without the refresh"
        assert failed_tasks > 0, f"{load.tasks_sent} tasks sent, none failed without the refresh"
        return
    assert served_before > 0 and load.requests > served_before
    assert load.failed == [], (load.failed[:3], deployment.web.log(layout.GUNICORN_UNIT)[-4000:])
    assert load.tasks_sent > 0
    wait_until(lambda: census(server) >= rows_before + load.tasks_sent, timeout=60, describe=lambda: census(server))
    assert task_failures(deployment)[failed_tasks_before:] == []
    print(f"with the refresh: {load.requests} requests, {load.tasks_sent} tasks, {ended} sessions ended, 0 failed")
    # The password file is the app's, 0600, and holds the escaped new password.
    for machine in deployment.machines.values():
        passfile = machine.host_path(layout.DATABASE_PASSFILE)
        assert (passfile.stat().st_uid, passfile.stat().st_mode & 0o777) == (APP_UID, 0o600)
        escaped = server.password.replace("\\", "\\\\").replace(":", "\\:")
        assert passfile.read_text() == f"*:*:*:*:{escaped}\n"


def test_systemd_analyze_verifies_the_rds_units_and_scores_the_password_writer_at_most_2(stack) -> None:
    """As test_rendered_files.py does for every stack's units, for the ones only rds stacks get."""
    deployment, _ = stack
    for machine in deployment.machines.values():
        assert {layout.DATABASE_PASSWORD_UNIT, layout.DATABASE_PASSWORD_TIMER} <= set(machine.unit_files())
        paths = [f"{layout.UNIT_DIR}/{unit}" for unit in machine.unit_files()]
        result = run_as_root(machine, ["systemd-analyze", "verify", *paths])
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and output == "", f"{machine.hostname}: {output}"
        score, failing = exposure(str(machine.host_path(f"{layout.UNIT_DIR}/{layout.DATABASE_PASSWORD_UNIT}")))
        assert score <= MAX_EXPOSURE, (score, failing)
