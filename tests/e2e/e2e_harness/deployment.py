"""A whole stack on this host: the program's user-data for every instance, rendered under mocks
with the Redis endpoint pointed at a local TLS Redis, booted unit by unit."""

from __future__ import annotations

import atexit
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from e2e_harness.leftovers import remove_dead_runs
from e2e_harness.machine import SimulatedMachine, Site, run_like
from e2e_harness.parameter_store import ParameterStore
from e2e_harness.pki import issue_server_cert, make_ca
from e2e_harness.ports import free_port
from e2e_harness.redis_server import PORT, SERVER_BINARY, RedisServer
from e2e_harness.units import parse_env_file
from userdata import layout

REPO = Path(__file__).resolve().parents[3]
LEDGER_DB = 2  # sample_app/myapp/ledger.py
CELERY = f"{layout.APP_BIN}/celery"
PYTHON = f"{layout.APP_BIN}/python"

# Short limits so faults resolve in seconds: a killed worker's task is redelivered once the
# visibility timeout (above every hard limit, as the program requires) has passed.
TEST_QUEUES = [
    {"name": "default", "concurrency": 2, "softTimeLimit": 6, "hardTimeLimit": 8},
    {
        "name": "long",
        "concurrency": 1,
        "softTimeLimit": 8,
        "hardTimeLimit": 10,
        "routes": ["myapp.tasks.generate_report"],
    },
]


# The replication group's primary endpoint in a `replicated` deployment: a name, as ElastiCache's,
# that the site's hosts file resolves and fail_over() moves (.test: never a real domain).
PRIMARY_ENDPOINT = "master.failover-e2e.cache.test"

SAMPLE_GREETING = "hello from app.environment"
SAMPLE_API_KEY_PARAMETER = "/sample-app/e2e/api-key"
SAMPLE_API_KEY = "sample-api-key-" + secrets.token_hex(8)


def loopback_address(salt: int) -> str:
    """A 127.0.0.0/8 address of this run's own, so its Redis can listen on the program's fixed
    port 6379 without meeting another Redis on this machine."""
    value = (os.getpid() * 7 + salt) % (250 * 250)
    return f"127.{101 + salt % 100}.{value // 250 + 1}.{value % 250 + 2}"


BASE_PREFIX = "e2e-"


def make_base() -> Path:
    """A run's tree: its name carries this process's pid, so a later run can tell it was killed."""
    base = Path(tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{os.getpid()}-", dir="/tmp"))
    base.chmod(0o755)
    return base


def sweep_killed_runs() -> None:
    """What an e2e session killed outright left: its trees (named by a pid that is gone) and every
    process still holding one open (its daemons and units log into it, run from it or mount it)."""
    remove_dead_runs(BASE_PREFIX, "/tmp")


def seeded_live_release(render, parameter: str) -> str:
    """The value the program gives the live release parameter when it creates it (app.release)."""
    (inputs,) = [r.inputs for r in render.of_type("aws:ssm/parameter:Parameter") if r.inputs["name"] == parameter]
    return str(inputs["insecureValue"])


def with_extra_member(artifact: bytes, name: str, data: bytes) -> bytes:
    """The artifact with one more file in it: what someone with write access to the bucket
    could upload over the real one."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as tampered,
    ):
        for member in source.getmembers():
            tampered.addfile(member, source.extractfile(member) if member.isfile() else None)
        extra = tarfile.TarInfo(name)
        extra.size = len(data)
        tampered.addfile(extra, io.BytesIO(data))
    return out.getvalue()


# What a build wrote, by (release, app, source): builds are reproducible (test_build_release.py
# checks the bytes), so a session builds each once, ~13 s of CPU, and every deployment asking for
# it again gets a copy of the same files in its own tree.
_builds: dict[tuple[str, Path | None, Path | None], Path] = {}


def build_release(release: str, out_dir: Path, app: Path | None = None, source: Path | None = None) -> Path:
    """The sample app's release (scripts/build-release.sh; `source`: a variant of the sample
    project to pack instead), or another project's through the builder the README gives teams
    (python -m ops build-release)."""
    built = _builds.get((release, app, source))
    if built is None:
        built = make_base()  # pid-named like a deployment's tree: a killed session's is swept
        atexit.register(shutil.rmtree, built, True)
        build = ["bash", str(REPO / "scripts/build-release.sh"), release, str(built)]
        if app is not None:
            build = [sys.executable, "-m", "ops", "build-release", "--app", str(app), "--release", release]
            build += ["--architecture", "x86_64", "--out", str(built)]
        environment = {**os.environ, "APP_SOURCE": str(source)} if source else None
        subprocess.run(build, check=True, capture_output=True, text=True, env=environment)
        _builds[(release, app, source)] = built
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in built.iterdir():
        shutil.copyfile(file, out_dir / file.name)
    return out_dir / f"{release}.tar.gz"


def upload_release(store: ParameterStore, release_env: dict[str, str], artifact: Path) -> None:
    """Both files build-release.sh wrote, where app-release looks: it checks the artifact against
    the checksum."""
    key = f"{release_env['ARTIFACT_PREFIX']}{artifact.name}"
    store.upload_artifact(release_env["ARTIFACT_BUCKET"], key, artifact)
    store.upload_artifact(release_env["ARTIFACT_BUCKET"], f"{key}.sha256", Path(f"{artifact}.sha256"))


@dataclass
class Deployment:
    base: Path
    redis: RedisServer
    store: ParameterStore
    site: Site
    machines: dict[str, SimulatedMachine]
    overrides: dict
    pki_dir: Path
    render: object = None
    web_port: int = 0
    release: str = ""
    rogue: RedisServer | None = field(default=None)
    replica: RedisServer | None = field(default=None)

    # --- setup ----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        worker_count: int = 2,
        web_count: int = 1,
        queues: list | None = None,
        visibility_timeout: int = 12,
        plain_port: int | None = None,
        engine: str = "redis",
        engine_version: str = "7.1",
        address_salt: int = 0,
        app: Path | None = None,
        app_overrides: dict | None = None,
        app_secrets: dict[str, str] | None = None,
        config: dict | None = None,
        own_app_roots: bool = False,
        replicated: bool = False,
        source: Path | None = None,
        hosts: dict[str, str] | None = None,
    ) -> Deployment:
        """`engine` picks the server program and the stack's `redis.engine`; a second deployment
        in the same run needs an `address_salt` of its own (its server's loopback address).
        `app` ships another Django project than sample_app/, with its own stack keys
        (`app_overrides`) and Parameter Store values (`app_secrets`, name -> value).
        `config`: more stack settings, e.g. {"app.releaseCommand": ...}.
        `own_app_roots`: each machine installs releases into an APP_ROOT of its own.
        `replicated`: a primary and a replica behind PRIMARY_ENDPOINT (see fail_over()).
        `source`: a variant of the sample project to ship as the release (build_release).
        `hosts`: names the machines resolve (name -> address), e.g. an RDS endpoint's."""
        from offline_render.program import render_stack
        from userdata.render import enabled_units, written_files

        base = make_base()
        redis_server: RedisServer | None = None
        replica: RedisServer | None = None
        store: ParameterStore | None = None
        try:  # from here on, a failure stops what started and removes the tree
            pki_dir = base / "pki"
            ca = make_ca(pki_dir, "stack")
            host = loopback_address(address_salt)
            endpoint = PRIMARY_ENDPOINT if replicated else None
            cert = issue_server_cert(pki_dir, "redis", ca, host, dns_name=endpoint)
            replica_host = loopback_address(address_salt + 50)
            replica_cert = (
                issue_server_cert(pki_dir, "redis-replica", ca, replica_host, dns_name=endpoint) if replicated else None
            )
            for path in pki_dir.iterdir():  # the app user reads the CA; keys stay root-only
                path.chmod(0o600 if path.suffix == ".key" else 0o644)
            pki_dir.chmod(0o755)
            token = secrets.token_hex(24)
            redis_server = RedisServer(
                host, token, cert, base / "redis", plain_port, SERVER_BINARY[engine], replicated=replicated
            )
            replica = None
            if replica_cert:
                replica = RedisServer(
                    replica_host, token, replica_cert, base / "redis-replica", None, SERVER_BINARY[engine], True, host
                )
            web_port = free_port()
            overrides = (
                {
                    "redis.engine": engine,
                    "redis.engineVersion": engine_version,
                    "redis.caCertFile": str(cert.ca_file),
                    # worker_count includes the Beat instance, its own group of one. A fixed worker
                    # group (min = max): the harness runs exactly these machines, and a scaling group
                    # needs minSize >= 1, which a Beat-only stack does not have.
                    "web.minSize": 0,
                    "web.desiredCapacity": web_count,
                    "web.port": web_port,
                    "worker.minSize": worker_count - 1,
                    "worker.desiredCapacity": worker_count - 1,
                    "worker.maxSize": worker_count - 1,
                    "worker.queues": queues or TEST_QUEUES,
                    "worker.stopMarginSeconds": 40,
                    "worker.visibilityTimeout": visibility_timeout,
                    "app.allowedHosts": ["localhost", "127.0.0.1"],
                    # The app's own settings: the sample app reads one of each (GET /app-settings).
                    "app.environment": {"SAMPLE_GREETING": SAMPLE_GREETING},
                    "app.secretParameters": {"SAMPLE_API_KEY": SAMPLE_API_KEY_PARAMETER},
                }
                | (app_overrides or {})
                | (config or {})
            )
            render = render_stack("prod", overrides=overrides, redis_endpoint=endpoint or host)
            sample = {f.path: f.content for f in written_files(render.instances[0].user_data)}
            source_env = parse_env_file(sample[layout.SECRETS_SOURCE_ENV])
            release_env = parse_env_file(sample[layout.RELEASE_ENV])
            release = seeded_live_release(render, release_env["RELEASE_PARAMETER"])
            store = ParameterStore(source_env["AWS_REGION"], base / "moto.log")
            redis_server.start()
            if replica:
                replica.start()
            store.start()
            store.put_secret(source_env["AUTH_TOKEN_PARAMETER"], token)
            store.put_secret(source_env["DJANGO_SECRET_KEY_PARAMETER"], secrets.token_urlsafe(50))
            store.put_secret(SAMPLE_API_KEY_PARAMETER, SAMPLE_API_KEY)
            for name, value in (app_secrets or {}).items():
                store.put_secret(name, value)
            # What exists before the first instance boots: the live release parameter as the
            # program creates it, and the artifact the README has the operator build and upload.
            # The machines install it themselves, through app-release.service (see boot()).
            store.put_release(release_env["RELEASE_PARAMETER"], release)
            upload_release(store, release_env, build_release(release, base / "artifacts", app, source))
            names = ({endpoint: host} if endpoint else {}) | (hosts or {})
            site = Site.create(base / "site", store.instance_environment(), names or None)
            machines = {
                instance.tags[layout.NAME_TAG]: SimulatedMachine(
                    site.with_own_app_root(instance.tags[layout.NAME_TAG]) if own_app_roots else site,
                    instance.tags[layout.NAME_TAG],
                    written_files(instance.user_data),
                    enabled_units(instance.user_data),
                )
                for instance in render.instances
            }
            deployment = cls(base, redis_server, store, site, machines, overrides, pki_dir, render, web_port, release)
            deployment.replica = replica
        except BaseException:
            for server in (redis_server, replica, store):
                if server:
                    server.stop()
            shutil.rmtree(base, ignore_errors=True)
            raise
        return deployment

    def start_rogue(self) -> RedisServer:
        ca = make_ca(self.pki_dir, "rogue")
        host = loopback_address(1)
        cert = issue_server_cert(self.pki_dir, "rogue-redis", ca, host)
        self.rogue = RedisServer(host, self.redis.password, cert, self.base / "rogue")
        self.rogue.start()
        return self.rogue

    def fail_over(self, unreachable: float, push: tuple[str, bytes] | None = None) -> float:
        """What ElastiCache's TestFailover does to a replication group, as clients see it: the
        primary stops answering (its node reboots: connections to it hang, nothing closes them),
        the replica is promoted and the endpoint name moves to it; `unreachable` seconds later the
        old primary answers again as the new one's replica, read-only (its connections get
        READONLY). Writes are paused and the replica caught up first, so no acknowledged write is
        lost. self.redis is the primary from the promotion on. Returns when the name moved.

        `push` (list, message): pushed in the same round trip as the pause, so a client blocked
        on that list (a worker's BRPOP) takes it before writes stop and can write nothing after."""
        old, new = self.redis, self.replica
        assert new is not None and old.process is not None, "not a running replicated deployment"
        pipe = old.client().pipeline(transaction=False)
        if push:
            pipe.lpush(*push)
        pipe.execute_command("CLIENT", "PAUSE", int((unreachable + 30) * 1000), "WRITE")
        pipe.execute()
        if push:
            assert old.client().llen(push[0]) == 0, f"no client was waiting on {push[0]}: nothing took the message"
        offset = old.client().info("replication")["master_repl_offset"]
        wait_until(lambda: new.client().info("replication")["master_repl_offset"] >= offset, timeout=30)
        old.process.send_signal(signal.SIGSTOP)
        new.client().execute_command("REPLICAOF", "NO", "ONE")
        self.site.resolve(PRIMARY_ENDPOINT, new.host)
        moved_at = time.time()
        self.redis, self.replica = new, old
        time.sleep(unreachable)
        old.process.send_signal(signal.SIGCONT)
        old.replica_of = new.host
        old.client().execute_command("REPLICAOF", new.host, PORT)
        old.client().execute_command("CLIENT", "UNPAUSE")
        return moved_at

    def boot(self) -> None:
        for machine in self.machines.values():
            machine.boot()
        if self.by_role("web"):
            self.wait_for_web()
        self.wait_for_workers(self.worker_names())

    def close(self) -> None:
        for machine in self.machines.values():
            machine.stop_all()
        for server in (self.redis, self.rogue, self.replica):
            if server:
                server.stop()
        self.store.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- looking at it ----------------------------------------------------------------------------

    def by_role(self, role: str) -> list[SimulatedMachine]:
        names = [i.tags[layout.NAME_TAG] for i in self.render.instances if i.tags[layout.ROLE_TAG] == role]
        return [self.machines[name] for name in names]

    @property
    def web(self) -> SimulatedMachine:
        return self.by_role("web")[0]

    @property
    def operator(self) -> SimulatedMachine:
        """Where one-off commands run: the web machine, or a worker in a stack without web."""
        return (self.by_role("web") or self.by_role("worker"))[0]

    @property
    def beat_machine(self) -> SimulatedMachine:
        (name,) = [
            i.tags[layout.NAME_TAG]
            for i in self.render.instances
            if i.tags.get(layout.BEAT_TAG) == layout.BEAT_TAG_VALUE
        ]
        return self.machines[name]

    def worker_names(self) -> set[str]:
        """Celery node names the worker units declare (--hostname QUEUE@%H)."""
        return {
            f"{queue}@{m.hostname}"
            for m in self.by_role(layout.WORKER_ROLE)
            for queue in map(layout.queue_of_worker_unit, m.units)
            if queue is not None
        }

    def ledger(self) -> redis.Redis:
        return self.redis.client(LEDGER_DB)

    def celery(
        self, machine: SimulatedMachine, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        unit = next(u for u in machine.units if layout.is_app_unit(u))
        app = machine.environment(machine.service(unit))["CELERY_APP"]  # app.module, as the units read it
        return run_like(machine, unit, [CELERY, "--app", app, *args], extra_env, timeout)

    def django(
        self,
        code: str,
        extra_env: dict[str, str] | None = None,
        timeout: float = 120,
        machine: SimulatedMachine | None = None,
    ) -> subprocess.CompletedProcess:
        """`manage.py shell -c CODE` with the environment of the machine's first app unit (the
        web machine's gunicorn unless another machine is given)."""
        machine = machine or self.operator
        unit = next(u for u in machine.units if layout.is_app_unit(u) and u != layout.BEAT_UNIT)
        return run_like(machine, unit, [PYTHON, "manage.py", "shell", "-c", code], extra_env, timeout)

    def ping_workers(self, timeout: float = 10) -> set[str]:
        result = self.celery(self.operator, "inspect", "ping", "--json", "--timeout", str(timeout))
        if result.returncode != 0:
            return set()
        return set(json.loads(result.stdout.strip().splitlines()[-1]))

    def wait_for_workers(self, expected: set[str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen = self.ping_workers(timeout=3)
            if expected <= seen:
                return
            time.sleep(1)
        logs = "\n".join(m.log(u)[-1500:] for m in self.machines.values() for u in m.processes)
        raise TimeoutError(f"workers answering ping: {sorted(seen)}; expected {sorted(expected)}\n{logs}")

    def http(self, method: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{path}", method=method, data=b"" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_for_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                status, body = self.http("GET", "/healthz")
                if status == 200:
                    return
                last = (status, body)
            except OSError as error:
                last = error
            time.sleep(0.5)
        raise TimeoutError(f"/healthz never answered 200 (last: {last})\n{self.web.log('gunicorn.service')[-3000:]}")

    def _exited(self) -> list[tuple[SimulatedMachine, str]]:
        """(machine, unit) of each long-running process that ended without the test stopping it."""
        return [
            (machine, unit)
            for machine in self.machines.values()
            for unit, process in machine.processes.items()
            if process.poll() is not None
        ]

    def exited_units(self) -> list[str]:
        """The units whose process ended without the test stopping it (a crash): machine, unit,
        exit status and the end of its log."""
        return [exit_report(machine, unit) for machine, unit in self._exited()]

    def restore(self) -> list[str]:
        """Restarts whatever a test stopped (Redis, any long-running unit) and waits until the
        stack answers again. A unit that exited by itself is started again too, as its
        `Restart=` would, so one test's crash does not fail the tests after it; those units are
        returned (see `exited_units`) for the test that caused it to fail on."""
        dead = self._exited()
        exited = [exit_report(machine, unit) for machine, unit in dead]
        for machine, unit in dead:
            machine.kill(unit)  # what the dead main process left, as systemd clears the cgroup
        if self.redis.process is None:
            self.redis.start()
        for machine in self.machines.values():
            for unit in machine.enabled_services:
                if machine.service(unit).type != "oneshot" and unit not in machine.processes:
                    machine.start(unit)
        if self.by_role("web"):
            self.wait_for_web()
        self.wait_for_workers(self.worker_names())
        return exited


def exit_report(machine: SimulatedMachine, unit: str) -> str:
    return f"{machine.hostname} {unit} exited with {machine.processes[unit].returncode}:\n{machine.log(unit)[-3000:]}"


def wait_until(condition, timeout: float, interval: float = 0.3, describe=None) -> None:
    """Polls `condition` until it is truthy; TimeoutError after `timeout` seconds, saying what
    `describe()` reports about the state it waited for."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            state = f": {describe()}" if describe else ""
            raise TimeoutError(f"condition still false after {timeout} s{state}")
        time.sleep(interval)
