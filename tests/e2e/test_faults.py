"""Faults with nothing lost: every enqueued task runs at least once; duplicates are counted.

Limits are short in this stack (e2e_harness/deployment.py TEST_QUEUES, visibility timeout 12 s),
so a task held by a dead worker comes back within seconds."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

from e2e_harness.deployment import Deployment, wait_until

DEFAULT_WORKER = "celery-worker-default.service"


def enqueue(running: Deployment, keys: list[str], seconds: float) -> None:
    code = (
        "import sys\nfrom myapp.tasks import record_execution\n"
        f"for key in {keys!r}: record_execution.delay(key, {seconds})"
    )
    result = running.django(code, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def counts(running: Deployment, kind: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in running.ledger().hgetall(f"ledger:{kind}").items()}


def starts_by_worker(running: Deployment, prefix: str) -> list[dict]:
    entries = [json.loads(e) for e in running.ledger().lrange("ledger:started:log", 0, -1)]
    return [e for e in entries if e["key"].startswith(prefix)]


def all_executed(running: Deployment, keys: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        done = counts(running, "executed")
        return all(done.get(key, 0) >= 1 for key in keys)

    return check


def backlog(running: Deployment, keys: list[str]) -> Callable[[], str]:
    """What is still missing and where the broker has it (for a timeout's message)."""

    def describe() -> str:
        done = counts(running, "executed")
        missing = [key for key in keys if not done.get(key)]
        broker = running.redis.client(0)
        started = counts(running, "started")
        begun = sum(1 for key in missing if key in started)
        # A worker that died takes the message its pending BRPOP popped with it (docs/e2e.md).
        exited = "".join(f"; {entry}" for entry in running.exited_units())
        return (
            f"{len(missing)} of {len(keys)} not executed (e.g. {missing[:5]}, {begun} of them started); "
            f"queue 'default' holds {broker.llen('default')}, unacked {broker.hlen('unacked')}{exited}"
        )

    return describe


def summary(running: Deployment, label: str, keys: list[str]) -> str:
    done = counts(running, "executed")
    runs = sum(done.get(key, 0) for key in keys)
    return (
        f"{label}: {len(keys)} enqueued, {sum(1 for k in keys if done.get(k))} executed, "
        f"{runs} runs, {runs - len(keys)} duplicates"
    )


def test_worker_killed_mid_task_has_its_task_run_again(live: Deployment, report) -> None:
    keys = [f"kill9-{n}" for n in range(8)]
    enqueue(live, keys, seconds=2.0)
    wait_until(lambda: starts_by_worker(live, "kill9-"), timeout=30)
    victim_node = starts_by_worker(live, "kill9-")[0]["worker"]  # default@<hostname>
    machine = live.machines[victim_node.split("@", 1)[1]]
    machine.kill(DEFAULT_WORKER, signal.SIGKILL)
    in_flight = {e["key"] for e in starts_by_worker(live, "kill9-") if e["worker"] == victim_node} - set(
        counts(live, "executed")
    )
    machine.start(DEFAULT_WORKER)

    wait_until(all_executed(live, keys), timeout=90, describe=backlog(live, keys))
    started = counts(live, "started")
    assert in_flight, "the kill landed between tasks; nothing was in flight"
    assert all(started[key] >= 2 for key in in_flight), {key: started[key] for key in in_flight}
    report(summary(live, f"kill -9 mid-task ({len(in_flight)} in flight)", keys))


def test_sigterm_lets_the_running_task_finish_within_the_stop_timeout(live: Deployment) -> None:
    key = "sigterm-1"
    enqueue(live, [key], seconds=3.0)
    wait_until(lambda: starts_by_worker(live, key), timeout=30)
    node = starts_by_worker(live, key)[0]["worker"]
    machine = live.machines[node.split("@", 1)[1]]
    unit = f"celery-worker-{node.split('@')[0]}.service"

    elapsed, status = machine.stop(unit)

    assert status == 0, machine.log(unit)[-2000:]
    assert elapsed < machine.service(unit).timeout_stop
    assert counts(live, "executed").get(key) == 1  # finished before the worker exited
    assert "Warm shutdown" in machine.log(unit)


def test_workers_reconnect_after_a_redis_restart_and_drain_the_queue(live: Deployment, report) -> None:
    before = {(m.hostname, unit): process for m in live.by_role("worker") for unit, process in m.processes.items()}
    queued = [f"restart-before-{n}" for n in range(40)]
    enqueue(live, queued, seconds=0.3)  # about 3 s of work for four processes: most still queued
    live.redis.restart()
    after = [f"restart-after-{n}" for n in range(10)]
    enqueue(live, after, seconds=0.0)

    wait_until(all_executed(live, queued + after), timeout=120, describe=backlog(live, queued + after))
    # Same processes: the workers reconnected by themselves, nobody restarted them.
    assert all(process.poll() is None for process in before.values())
    assert {(m.hostname, u): p for m in live.by_role("worker") for u, p in m.processes.items()} == before
    report(summary(live, "Redis restarted with tasks queued", queued + after))


def test_2000_tasks_survive_two_restarts_of_every_worker(live: Deployment, report) -> None:
    keys = [f"bulk-{n}" for n in range(2000)]
    publishing_failures: list[BaseException] = []

    def produce() -> None:  # a thread's exception would not fail the test by itself
        try:
            enqueue(live, keys, 0.0)
        except BaseException as error:
            publishing_failures.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    stops = []
    for _ in range(2):
        time.sleep(2.0)
        for machine in live.by_role("worker"):
            stops.append((machine.hostname, *machine.stop(DEFAULT_WORKER)))
            machine.start(DEFAULT_WORKER)
        live.wait_for_workers(live.worker_names())
    producer.join(timeout=300)

    assert not producer.is_alive(), "the producer was still publishing after 300 s"
    assert not publishing_failures, f"publishing failed: {publishing_failures[0]!r}"
    # A worker SIGKILLed at TimeoutStopSec never restores its in-flight BRPOP reply: that task
    # is gone (docs/e2e.md, "A task lost on a worker restart"). Every stop must be warm.
    assert all(status == 0 for _, _, status in stops), [
        f"{host}: {elapsed:.1f} s, status {status}" for host, elapsed, status in stops
    ]

    wait_until(all_executed(live, keys), timeout=180, interval=1.0, describe=backlog(live, keys))
    done = counts(live, "executed")
    assert all(done.get(key, 0) >= 1 for key in keys)
    report(summary(live, "2000 tasks, workers restarted twice", keys))


def test_a_unit_that_dies_by_itself_is_started_again_and_named(running: Deployment) -> None:
    """The `live` fixture's check: a crash fails the test it happened in, with the unit's log,
    and the next test finds the unit running again, as `Restart=` would leave it."""
    machine = running.by_role("worker")[0]
    crashed = machine.processes[DEFAULT_WORKER]
    crashed.send_signal(signal.SIGKILL)  # the main process only, not through the harness's kill()
    crashed.wait(timeout=30)

    exited = running.restore()

    assert [entry.split(":", 1)[0] for entry in exited] == [f"{machine.hostname} {DEFAULT_WORKER} exited with -9"]
    assert machine.processes[DEFAULT_WORKER] is not crashed
    assert machine.processes[DEFAULT_WORKER].poll() is None
    assert running.exited_units() == []
