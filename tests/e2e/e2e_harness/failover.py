"""A broker failover under a steady task load, measured from the execution ledger
(sample_app/myapp/ledger.py): how long each worker took to consume again, and every task the
producer was told it enqueued, counted as executed once, several times, or never.

Shared by tests/e2e/test_failover.py and bench/failover.py."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from e2e_harness.deployment import LEDGER_DB, REPO, TEST_QUEUES, Deployment, wait_until
from e2e_harness.redis_server import PORT
from userdata import layout
from userdata.render import BROKER_DB

# A producer in the web unit's environment, as a view enqueuing work would: one task every
# INTERVAL, each line flushed so a producer that hangs still tells what it sent.
PRODUCER = """
import sys, time
from myapp.tasks import record_execution
end = time.monotonic() + {seconds}
n = 0
while time.monotonic() < end:
    key = "{prefix}-%d" % n
    n += 1
    try:
        record_execution.delay(key, {task_seconds})
        print("sent", key, time.time(), flush=True)
    except Exception as error:
        print("failed", key, time.time(), type(error).__name__, str(error)[:120].replace(chr(10), " "), flush=True)
    time.sleep({interval})
"""


@dataclass
class FailoverRun:
    failover_at: float  # time.time() when the failover began: the primary stops answering
    moved_at: float  # when the endpoint name moved to the promoted replica
    sent: dict[str, float]  # key -> when delay() returned
    enqueue_errors: dict[str, str]  # key -> the exception delay() raised
    producer_hung: bool
    # worker node -> seconds from the failover's start until it started a task sent after the move
    recovery: dict[str, float | None]
    executed: dict[str, int] = field(default_factory=dict)
    first_start: dict[str, float] = field(default_factory=dict)
    whereabouts: dict[str, str] = field(default_factory=dict)  # lost key -> where the broker has it

    @property
    def lost(self) -> list[str]:
        return sorted(key for key in self.sent if not self.executed.get(key))

    @property
    def duplicated(self) -> list[str]:
        return sorted(key for key in self.sent if self.executed.get(key, 0) > 1)

    @property
    def recovery_seconds(self) -> float | None:
        """The slowest worker's; None if one never consumed again."""
        values = list(self.recovery.values())
        return None if not values or None in values else max(v for v in values if v is not None)

    @property
    def longest_enqueue_wait(self) -> float:
        """The longest a producer's delay() took (gap between two sends returning)."""
        times = sorted(self.sent.values())
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def in_flight_at_failover(self, key: str) -> bool:
        """Started before every worker consumed again: running or reserved when the connections
        broke, so acks_late may run it again (the only duplicates allowed)."""
        recovered = self.failover_at + (self.recovery_seconds or 0.0)
        return self.first_start.get(key, recovered + 1) <= recovered

    def summary(self, label: str) -> str:
        nodes = ", ".join(f"{node}: {_seconds(s)}" for node, s in sorted(self.recovery.items()))
        return (
            f"{label}: {len(self.sent)} enqueued, {len(self.enqueue_errors)} enqueue errors"
            f"{' (producer hung)' if self.producer_hung else ''}, longest delay() {self.longest_enqueue_wait:.1f} s, "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated; workers consuming again after "
            f"{_seconds(self.recovery_seconds)} ({nodes})"
            + "".join(f"\n  lost {len(keys)} {where}: {_some(keys)}" for where, keys in self.lost_by_place().items())
        )

    def lost_by_place(self) -> dict[str, list[str]]:
        """The lost keys grouped by where the broker has them (whereabouts)."""
        places: dict[str, list[str]] = {}
        for key, where in sorted(self.whereabouts.items()):
            places.setdefault(where, []).append(key)
        return places


def _some(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def default_queue_nodes(deployment: Deployment) -> set[str]:
    return {node for node in deployment.worker_names() if node.startswith(f"{TEST_QUEUES[0]['name']}@")}


def run_failover_under_load(
    deployment: Deployment,
    prefix: str,
    *,
    before: float = 6.0,
    after: float = 40.0,
    interval: float = 0.1,
    task_seconds: float = 0.2,
    settle: float = 90.0,
    unreachable: float = 30.0,
) -> FailoverRun:
    """Tasks enqueued every `interval` from `before` seconds ahead of the failover to `after`
    seconds past it; then up to `settle` seconds for the queue to drain."""
    code = PRODUCER.format(seconds=before + after, prefix=prefix, task_seconds=task_seconds, interval=interval)
    produced: dict[str, object] = {}

    def produce() -> None:
        try:
            produced["result"] = deployment.django(code, timeout=before + after + 60)
        except subprocess.TimeoutExpired as hung:
            produced["hung"] = hung

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(before)
    failover_at = time.time()
    moved_at = deployment.fail_over(unreachable)
    producer.join()
    done = produced.get("result")
    output = done.stdout if isinstance(done, subprocess.CompletedProcess) else _text(produced["hung"].stdout)
    sent: dict[str, float] = {}
    errors: dict[str, str] = {}
    for line in output.splitlines():
        words = line.split(" ", 3)
        if words[0] == "sent" and len(words) == 3:
            sent[words[1]] = float(words[2])
        elif words[0] == "failed" and len(words) == 4:
            errors[words[1]] = words[3]
    run = FailoverRun(failover_at, moved_at, sent, errors, "hung" in produced, {})
    try:
        wait_until(lambda: not _refresh(deployment, run).lost, timeout=settle, interval=1.0)
    except TimeoutError:
        pass  # what is still missing is the run's result
    run = _refresh(deployment, run)
    run.whereabouts = whereabouts(deployment, run.lost)
    return run


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _refresh(deployment: Deployment, run: FailoverRun) -> FailoverRun:
    ledger = deployment.ledger()
    run.executed = {k.decode(): int(v) for k, v in ledger.hgetall("ledger:executed").items()}
    starts = [json.loads(entry) for entry in ledger.lrange("ledger:started:log", 0, -1)]
    run.first_start = {}
    for entry in starts:
        run.first_start.setdefault(entry["key"], entry["at"])
    after = [e for e in starts if run.sent.get(e["key"], 0) > run.moved_at]
    run.recovery = {
        node: min((e["at"] - run.failover_at for e in after if e["worker"] == node), default=None)
        for node in default_queue_nodes(deployment)
    }
    return run


def whereabouts(deployment: Deployment, keys: list[str]) -> dict[str, str]:
    """Where the broker has each of `keys` (record_execution's), and how often it started: in a
    queue (a worker never took it), in the unacked set (taken, to be restored after the
    visibility timeout), or nowhere (taken and never recorded: lost for good)."""
    if not keys:
        return {}
    broker = deployment.redis.client(BROKER_DB)
    places = [
        (message, f"queued in {name.decode()!r}")
        for name in broker.scan_iter(match=f"{TEST_QUEUES[0]['name']}*", _type="list")  # with its priority lists
        for message in broker.lrange(name, 0, -1)
    ] + [(json.loads(record)[0], "unacked") for record in broker.hvals("unacked")]
    held = {key: place for message, place in places if (key := _task_key(message)) is not None}
    started = deployment.ledger().hgetall("ledger:started")
    return {
        key: f"{held.get(key, 'in no queue and not unacked')}, started {int(started.get(key.encode(), 0))} times"
        for key in keys
    }


def _task_key(message: bytes | str | dict) -> str | None:
    """The key of a record_execution message (Celery's protocol 2: the body is [args, kwargs,
    embed]); None for another task's (a healthcheck, Beat's)."""
    fields = message if isinstance(message, dict) else json.loads(message)
    if fields["headers"]["task"] != "myapp.tasks.record_execution":
        return None
    return str(json.loads(base64.b64decode(fields["body"]))[0][0])


# A database of the broker's server the app uses for nothing: task_message publishes there.
SIDE_DB = LEDGER_DB + 1


def task_message(deployment: Deployment, key: str) -> bytes:
    """The message `record_execution.delay(key)` pushes onto the default queue, as the web unit
    publishes it, taken before any worker sees it (published to SIDE_DB, popped from there)."""
    web = deployment.web
    unit = next(u for u in web.units if layout.is_app_unit(u) and u != layout.BEAT_UNIT)
    broker = urlsplit(web.environment(web.service(unit))["CELERY_BROKER_URL"])
    side = urlunsplit(broker._replace(path=f"/{SIDE_DB}"))
    code = f"from myapp.tasks import record_execution; record_execution.delay({key!r})"
    published = deployment.django(code, extra_env={"CELERY_BROKER_URL": side})
    assert published.returncode == 0, published.stderr
    message = deployment.redis.client(SIDE_DB).rpop(TEST_QUEUES[0]["name"])
    assert message, "the task was not published"
    return message


# Above the broker's socket_timeout (5 s), after which the worker's record of the message it took
# fails and is retried through the moved name.
TAKEN_UNREACHABLE = 10.0


def fail_over_as_a_worker_takes_a_task(
    deployment: Deployment, key: str, unreachable: float = TAKEN_UNREACHABLE
) -> str | None:
    """A failover in the moment a worker takes `record_execution(key)`: the message is pushed in
    the same round trip as the write pause, while the workers wait on the queue, so its unacked
    record can only fail on the silent primary. Returns None once the task ran, else where the
    broker has it (60 s after the name moved)."""
    deployment.fail_over(unreachable, push=(TEST_QUEUES[0]["name"], task_message(deployment, key)))
    ledger = deployment.ledger()
    try:
        wait_until(lambda: ledger.hget("ledger:executed", key), timeout=60)
    except TimeoutError:
        return whereabouts(deployment, [key])[key]
    return None


# Variants of the sample project, each {file in it: text appended to it}: the proof's control
# runs. UNFIXED_POOL: its forked pool children keep the worker's broker sockets (the release
# before docs/failover.md's handler; Celery's default). WITHOUT_FAILOVER_OPTIONS: besides, back to
# Celery's and kombu's defaults for every broker option docs/failover.md explains (what a project
# that never set them runs).
UNFIXED_POOL = {"proj/celery.py": "\nworker_process_init.disconnect(release_inherited_broker_sockets)\n"}
# kombu's own Redis transport: a message taken as the primary stops is not recorded again.
UNRECORDED = {"proj/settings/production.py": "\ndel CELERY_BROKER_TRANSPORT\n"}
WITHOUT_FAILOVER_OPTIONS = UNFIXED_POOL | {
    "proj/settings/production.py": """
CELERY_BROKER_TRANSPORT_OPTIONS = {
    key: value
    for key, value in CELERY_BROKER_TRANSPORT_OPTIONS.items()
    if key not in ("socket_timeout", "socket_connect_timeout", "health_check_interval")
}
CELERY_BROKER_CHANNEL_ERROR_RETRY = False
del CELERY_REDIS_SOCKET_TIMEOUT, CELERY_REDIS_SOCKET_CONNECT_TIMEOUT, CELERY_BROKER_TRANSPORT
"""
}


def sample_app_variant(directory: Path, appended: dict[str, str]) -> Path:
    """A copy of the sample project in `directory`, `appended` added to its files."""
    source = directory / "sample-app-variant"
    shutil.copytree(REPO / "sample_app", source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, text in appended.items():
        path = source / name
        path.write_text(path.read_text() + text)
    return source


# --- pool children and the worker's broker sockets ------------------------------------------------


def _children(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def replace_a_pool_child(worker: int, timeout: float = 30) -> int:
    """Kills one pool child of the worker process `worker` (as a hard time limit or a crash does)
    and returns the pid of the child the pool forks in its place."""
    before = _children(worker)
    os.kill(min(before), signal.SIGKILL)
    wait_until(lambda: len(_children(worker) - before) == 1, timeout, describe=lambda: _children(worker))
    (replacement,) = _children(worker) - before
    return replacement


def broker_sockets(pid: int) -> set[str]:
    """The inodes of the TCP sockets process `pid` holds to the broker's port (both servers')."""
    to_broker = {
        fields[9]
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for fields in (line.split() for line in Path(table).read_text().splitlines()[1:])
        if int(fields[2].rsplit(":", 1)[1], 16) == PORT
    }
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in to_broker:
            held.add(target[8:-1])
    return held
