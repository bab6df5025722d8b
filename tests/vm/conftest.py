"""The VM suite's fixtures: the cached image, the program's user-data per role, the live-release
parameter store, and one boot per scenario for the whole session (each boot takes minutes under
TCG; every test of a boot reads the same console). The boots the selected tests read (their
`role`/`name` parameter, or their `boots` marker) and the benchmark run two at a time from the
first test that asks for one: a boot spends much of its time waiting (downloads, IMDS timeouts,
Celery's and the scenarios' waits), so two share the two cores; a boot that needs another's
outcome starts when that one has ended. In a session that also runs other lanes (`.ci/run`), the
lane's first test (test_boots.py) is moved to the session's start: the boots run one at a time
beside the other lanes, whose tests leave a core idle much of the time (daemons starting,
failovers and restarts waited out), and two at a time once this lane's tests begin.

The boots, all from the prod stack as the program renders it:
  web, worker-beat, worker  the default path (app.source: s3): the stock OS, the release
                            downloaded and its venv built at boot; `web` then deploys the next
                            release with the ops tool's scripts, `worker` kills and stops workers
  web-ami                   the baked-AMI path (app.source: ami): the release is on the disk
  web-replaced              a fresh web instance booted after that deploy was recorded as the
                            live release: it must come up on the deployed release
  bookshelf-worker-beat     examples/bookshelf (built by python -m ops build-release) on the s3
  bookshelf-web             path, its database the host's PostgreSQL (TLS, password; reached from
                            the guest through qemu's restricted user network), DATABASE_URL from
                            Parameter Store: the Beat instance boots first and migrates, then web
  worker-boot-failed        a worker whose live release names an artifact S3 does not have: the
                            program's app-boot-failed@ reports the instance unhealthy
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.deployment import loopback_address
from e2e_harness.leftovers import trees_of_dead_runs
from e2e_harness.parameter_store import ParameterStore
from e2e_harness.pki import issue_server_cert, make_ca
from e2e_harness.ports import free_port
from e2e_harness.postgres_server import PostgresServer

from ops.scripts import install_release_script, switch_release_script
from scripts.vm import boot as harness
from scripts.vm import image as vm_image
from tests.benches import run_quick

REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "cloud-localds", "debootstrap", "mkfs.ext4", "dpkg-deb")
ROLE_BOOTS = ("web", "worker-beat", "worker")
EXAMPLE_BOOTS = ("bookshelf-worker-beat", "bookshelf-web")
# Every boot that ends with the program's units active (the failed boot's do not, by design).
ALL_BOOTS = (*ROLE_BOOTS, "web-ami", "web-replaced", *EXAMPLE_BOOTS)
FAILED_BOOT = "worker-boot-failed"
BENCH = "bench"
# Boots that start once another has ended: the replaced web instance boots the release the `web`
# boot deployed; the example's web boots once the Beat instance has migrated the database (each
# guest has a broker of its own, so two at once would each take the release command's lock).
AFTER = {"web-replaced": "web", "bookshelf-web": "bookshelf-worker-beat"}
# Longest chains first, so the last boots are short: two at a time.
ORDER = ("web", "bookshelf-worker-beat", BENCH, "worker", "worker-beat", "web-ami", FAILED_BOOT)
PARALLEL = 2
# The test that starts the boots; moved to the session's start when other lanes run in it too.
STARTER = "test_boots.py::test_every_boot_the_selected_tests_read_is_started"
VM_TESTS = Path(__file__).resolve().parent
# The live release of the failed boot: no such artifact in the S3 stand-in.
MISSING_RELEASE = "vm-missing-artifact"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "boots(*names): the VM boots (or the bench) a test reads")


def in_this_lane(item: pytest.Item) -> bool:
    return item.path.resolve().is_relative_to(VM_TESTS)


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselected and the lanes were ordered
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The starter first, so the boots run beside the other lanes' tests (a no-op when this
    lane runs alone: the starter is its first test anyway)."""
    starter = next((item for item in items if in_this_lane(item) and item.nodeid.endswith(STARTER)), None)
    if starter is not None:
        items.remove(starter)
        items.insert(0, starter)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """This lane's tests have begun (called for its items only): the boots take both cores."""
    if not item.nodeid.endswith(STARTER):
        for boots in SUMMARY:
            boots.widen()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which boots the selected tests read (after -k and -m deselected): all started at once."""
    known = {*ALL_BOOTS, FAILED_BOOT, BENCH}
    wanted: set[str] = set()
    # Only this lane's tests: `.ci/run` collects every lane in one session, and other lanes'
    # parameters need not be names (or even hashable).
    for item in (item for item in session.items if in_this_lane(item)):
        params = getattr(item, "callspec", None)
        values = params.params.values() if params else ()
        wanted |= {value for value in values if isinstance(value, str) and value in known}
        for marker in item.iter_markers("boots"):
            wanted |= set(marker.args)
    session.config.stash[WANTED] = wanted


WANTED = pytest.StashKey[set[str]]()
# The example's database directory: /tmp/<prefix><pid of the session>-XXXX.
DATABASE_PREFIX = "vm-database-"
SUMMARY: list[Boots] = []  # the session's boots, for the closing summary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for boots in SUMMARY:
        terminalreporter.section("VM boots (seconds since the first was started)")
        for line in boots.summary():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def stack() -> harness.VmStack:
    return harness.vm_stack()


@pytest.fixture(scope="session")
def image(stack: harness.VmStack) -> vm_image.Image:
    sweep_killed_runs()  # the session's first VM step
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    assert not missing, f"VM tools missing: {missing}; run scripts/setup.d/40-vm.sh"
    return vm_image.ensure_image(stack.store)


@pytest.fixture(scope="session")
def rendered(stack: harness.VmStack) -> dict[str, tuple[str, dict[str, str]]]:
    return stack.roles


@pytest.fixture(scope="session")
def parameter_store(stack: harness.VmStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """AWS's Parameter Store for the stack (a moto server on the host's loopback) holding the live
    release as `pulumi up` creates it: the configured app.release. Each boot's guest stand-in is
    seeded with what it holds at boot time. A process of its own: moto's in-process state is the
    process's, and the other lanes' tests that mock AWS in-process (beside the boots in `.ci/run`)
    reset it."""
    store = ParameterStore(stack.store.region, tmp_path_factory.mktemp("vm-parameter-store") / "moto.log")
    store.start()
    try:
        ssm = store.client("ssm")
        ssm.put_parameter(Name=stack.release_parameter, Value=stack.store.release, Type="String")
        yield ssm
    finally:
        store.stop()


@pytest.fixture(scope="session")
def example_database() -> Iterator[PostgresServer]:
    """examples/bookshelf's existing database: Debian's PostgreSQL on a loopback address of this
    run (TLS only, password auth; e2e_harness/postgres_server.py), its certificate naming that
    address and the one the guests reach it at."""
    base = Path(tempfile.mkdtemp(prefix=f"{DATABASE_PREFIX}{os.getpid()}-"))
    base.chmod(0o755)  # the postgres user enters it
    ca = make_ca(base / "pki", "database")
    host = loopback_address(31)
    cert = issue_server_cert(base / "pki", "postgres", ca, host, harness.DATABASE_GUEST_ADDRESS)
    server = PostgresServer(host, free_port(), cert, base / "postgres")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def sweep_killed_runs() -> None:
    """What a VM session killed outright left: its database (the directory names the session's
    pid) and its qemu processes (orphans booting an overlay; a live session's have a parent)."""
    for path in trees_of_dead_runs(DATABASE_PREFIX):
        postmaster = path / "postgres" / "data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGQUIT)  # immediate shutdown
        shutil.rmtree(path, ignore_errors=True)
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            command = (status.parent / "cmdline").read_bytes()
            if fields.get("Name") == "qemu-system-x86" and fields.get("PPid") == "1" and b"overlay.qcow2" in command:
                os.kill(int(status.parent.name), signal.SIGKILL)


def example_database_url(database: PostgresServer) -> str:
    """DATABASE_URL as the guest uses it: the forwarded address, the CA checked, the name verified."""
    host_side = f"{database.host}:{database.port}"
    guest_side = f"{harness.DATABASE_GUEST_ADDRESS}:{harness.DATABASE_PORT}"
    url = database.url().replace(host_side, guest_side)
    return url.replace(str(database.cert.ca_file), harness.DATABASE_CA_IN_GUEST)


class Boots:
    """The session's boots (and the bench), PARALLEL at a time (one while other lanes' tests
    still run: `beside_other_lanes`, until widen()); a boot in AFTER starts when the one it
    follows has ended, and fails if that one failed."""

    def __init__(self, jobs: dict[str, Callable[[], Any]], beside_other_lanes: bool = False) -> None:
        self.jobs = jobs
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="vm-boot")
        # Jobs start in the order they were submitted, at most `allowed` at once: one while the
        # other lanes' tests run, until widen().
        self.gate = threading.Condition()
        self.waiting: deque[str] = deque()
        self.running = 0
        self.allowed = 1 if beside_other_lanes else PARALLEL
        self.started: dict[str, Future[Any]] = {}
        self.lock = threading.Lock()
        self.created = time.monotonic()
        # name -> (seconds from the fixture's start to the job's start, to its end)
        self.spans: dict[str, tuple[float, float]] = {}

    def start(self, name: str) -> Future[Any]:
        if name not in self.jobs:
            raise KeyError(f"no VM boot named {name!r}; boots: {', '.join(self.jobs)}")
        with self.lock:
            if name in self.started:
                return self.started[name]
            outcome: Future[Any] = Future()
            self.started[name] = outcome
        first = AFTER.get(name)
        if first is None:
            self.submit(name, outcome)
        else:
            self.start(first).add_done_callback(lambda _: self.submit(name, outcome))
        return outcome

    def submit(self, name: str, outcome: Future[Any]) -> None:
        def timed() -> Any:
            with self.gate:
                self.gate.wait_for(lambda: self.waiting[0] == name and self.running < self.allowed)
                self.waiting.popleft()
                self.running += 1
                self.gate.notify_all()
            began = time.monotonic() - self.created
            try:
                if harness.STOP.is_set():  # the session ended while this boot waited for its turn
                    raise RuntimeError(f"boot {name} not started: the session ended")
                return self.jobs[name]()
            finally:
                self.spans[name] = (round(began), round(time.monotonic() - self.created))
                with self.gate:
                    self.running -= 1
                    self.gate.notify_all()

        def copy(done: Future[Any]) -> None:
            error = done.exception()
            outcome.set_exception(error) if error else outcome.set_result(done.result())

        with self.gate:
            self.waiting.append(name)
        self.pool.submit(timed).add_done_callback(copy)

    def widen(self) -> None:
        with self.gate:
            self.allowed = PARALLEL
            self.gate.notify_all()

    def get(self, name: str) -> Any:
        return self.start(name).result()

    def summary(self) -> list[str]:
        """One line per job that ran (when it started and ended), and how long they took together
        and one after another."""
        lines = [
            f"{name}: {start}-{end} s ({end - start} s){self.restarted(name)}"
            for name, (start, end) in sorted(self.spans.items(), key=lambda kv: kv[1])
        ]
        if self.spans:
            wall = max(end for _, end in self.spans.values())
            serial = sum(end - start for start, end in self.spans.values())
            lines.append(
                f"{PARALLEL} at a time: {wall} s from the first start to the last end; one after another: {serial} s"
            )
        return lines

    def restarted(self, name: str) -> str:
        """A boot's note when its first qemu never started the probe (harness.STARTUP_TIMEOUT_SECONDS)."""
        outcome = self.started[name]
        boot = outcome.result() if outcome.done() and not outcome.exception() else None
        silent = boot.silent_attempt if isinstance(boot, harness.Boot) else None
        return f", after a first qemu silent for {silent.describe()}" if silent else ""

    def close(self) -> None:
        harness.STOP.set()  # a boot still running (an interrupted session) kills its qemu
        self.widen()  # a job waiting for its turn starts, sees STOP and ends
        self.pool.shutdown(wait=True, cancel_futures=True)
        harness.STOP.clear()


@pytest.fixture(scope="session")
def boots(
    image: vm_image.Image,
    stack: harness.VmStack,
    parameter_store: Any,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Boots]:
    wanted = request.config.stash.get(WANTED, set())
    database: PostgresServer | None = None
    if wanted & {*EXAMPLE_BOOTS}:
        database = request.getfixturevalue("example_database")
    # Rendered here, never in a boot's thread: Pulumi's mock runtime is the process's, and the
    # other lanes' tests render in the main thread while the boots run.
    ami_user_data = harness.role_user_data(harness.render(harness.AMI_OVERRIDES)) if "web-ami" in wanted else {}
    example_user_data = (
        harness.role_user_data(harness.render(harness.EXAMPLE_OVERRIDES)) if wanted & {*EXAMPLE_BOOTS} else {}
    )

    def start(name: str, role: str, user_data: str, disk: Path, **data: Any) -> harness.Boot:
        services = data.pop("services", None)
        live = (
            data.pop("live", None) or parameter_store.get_parameter(Name=stack.release_parameter)["Parameter"]["Value"]
        )
        data["parameters"] = {**harness.seeded_parameters(stack, live), **data.get("parameters", {})}
        workdir = tmp_path_factory.mktemp(f"vm-{name}")
        return harness.boot(image, role, user_data, workdir, data=data, disk=disk, services=services)

    def deploying_web() -> harness.Boot:
        deploy = {
            "release": vm_image.NEXT_RELEASE,
            "install": install_release_script(vm_image.NEXT_RELEASE, image.artifact_sha256(vm_image.NEXT_RELEASE)),
            "switch": switch_release_script("web", vm_image.NEXT_RELEASE),
        }
        return start("web", "web", stack.roles["web"][0], image.base, scenario="deploy", deploy=deploy)

    def replaced_web() -> harness.Boot:
        """After the deploy on `web` succeeded, the ops tool records the live release; then a
        fresh web instance boots (same user-data, app.release still the old one)."""
        from ops.live_release import PinnedRelease, record

        deploy = jobs.get("web").first("deploy")
        assert deploy["switch"] and deploy["switch"]["rc"] == 0, deploy
        release = deploy["active_after"]
        record(parameter_store, stack.release_parameter, PinnedRelease(release, image.artifact_sha256(release)))
        return start("web-replaced", "web", stack.roles["web"][0], image.base)

    def example(role: str) -> Callable[[], harness.Boot]:
        def boot() -> harness.Boot:
            assert database is not None
            user_data = example_user_data[role][0]
            service = harness.HostService(
                harness.DATABASE_GUEST_ADDRESS, harness.DATABASE_PORT, database.host, database.port
            )
            link = {
                "address": harness.GUEST_ADDRESS,
                "files": {harness.DATABASE_CA_IN_GUEST: database.cert.ca_file.read_text()},
            }
            url = {"type": "SecureString", "value": example_database_url(database)}
            return start(
                f"bookshelf-{role}",
                role,
                user_data,
                image.base,
                scenario="bookshelf",
                app_module="bookshelf",
                live=vm_image.EXAMPLE_RELEASE,
                parameters={harness.EXAMPLE_DATABASE_URL_PARAMETER: url},
                host_link=link,
                services=[service],
            )

        return boot

    jobs = Boots(
        {
            "web": deploying_web,
            "worker": lambda: start("worker", "worker", stack.roles["worker"][0], image.base, scenario="restart"),
            "worker-beat": lambda: start("worker-beat", "worker-beat", stack.roles["worker-beat"][0], image.base),
            "web-ami": lambda: start("web-ami", "web", ami_user_data["web"][0], image.ami),
            "web-replaced": replaced_web,
            "bookshelf-worker-beat": example("worker-beat"),
            "bookshelf-web": example("web"),
            FAILED_BOOT: lambda: start(
                FAILED_BOOT,
                "worker",
                stack.roles["worker"][0],
                image.base,
                scenario="boot-failed",
                live=MISSING_RELEASE,
            ),
            BENCH: lambda: run_quick("vm_boot.py", timeout=3600),
        },
        beside_other_lanes=not all(in_this_lane(item) for item in request.session.items),
    )
    SUMMARY.append(jobs)
    try:
        for name in (*ORDER, *AFTER):  # every boot the selected tests read, from the start
            if name in wanted:
                jobs.start(name)
        yield jobs
    finally:
        jobs.close()


@pytest.fixture(scope="session")
def booted(boots: Boots) -> Callable[[str], harness.Boot]:
    """A boot by name, once it has ended."""

    def get(name: str) -> harness.Boot:
        boot: harness.Boot = boots.get(name)
        return boot

    return get
