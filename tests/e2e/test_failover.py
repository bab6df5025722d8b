"""A broker failover as ElastiCache's TestFailover does it, against workers started from the
rendered units: two real redis-servers (TLS + AUTH, replicating over TLS), the broker URL naming
the endpoint (certificate SAN = the name), the name moved to the promoted replica and the old
primary unreachable for a while, then read-only (e2e_harness/deployment.py fail_over).

With the broker options of docs/failover.md, and its handler that keeps the worker's broker
sockets out of the forked pool children, every worker consumes again within 30 s and no task is
lost; the control run ships the same release with both undone and shows what the options prevent
(e2e_harness/failover.py WITHOUT_FAILOVER_OPTIONS)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.failover import (
    WITHOUT_FAILOVER_OPTIONS,
    broker_sockets,
    fail_over_as_a_worker_takes_a_task,
    replace_a_pool_child,
    run_failover_under_load,
    sample_app_variant,
)

from userdata import layout

# Seconds: issue 21's target. The options bring a worker back within 1 + 2 x 10 s. A pool child
# forked while the worker held its broker sockets kept a worker stalled until the old primary
# answered again (31.4 s) or for good (docs/failover.md): the bound catches that.
RECOVERY_BOUND = 30.0
UNREACHABLE = 30.0  # how long the old primary answers nothing (its node rebooting)
# How long the control run waits for its queue to drain once the load has stopped (40 s after the
# failover). What it asserts is over by then: no worker consumed within UNREACHABLE, the producer
# hung. The harness's default (90 s) only lengthened the lane: the control's workers did not
# consume again within it (docs/performance.md, broker failover).
CONTROL_SETTLE = 10.0


def replicated(source: Path | None) -> Iterator[Deployment]:
    deployment = Deployment.create(replicated=True, source=source)
    try:
        deployment.boot()
        yield deployment
    finally:
        deployment.close()


@pytest.fixture()
def with_options() -> Iterator[Deployment]:
    yield from replicated(None)


@pytest.fixture()
def without_options() -> Iterator[Deployment]:
    with tempfile.TemporaryDirectory(prefix="failover-control-") as scratch:
        Path(scratch).chmod(0o755)
        yield from replicated(sample_app_variant(Path(scratch), WITHOUT_FAILOVER_OPTIONS))


def test_workers_consume_again_within_30_s_of_a_failover_and_lose_nothing(with_options: Deployment, report) -> None:
    # What the bound depends on: a pool child forked after the worker connected (here one killed
    # and replaced, as a hard time limit does) holds none of the worker's broker sockets.
    machine = with_options.by_role(layout.WORKER_ROLE)[0]
    worker = machine.main_pid(next(u for u in machine.processes if layout.queue_of_worker_unit(u)))
    assert broker_sockets(worker), "the worker holds no socket to the broker"
    child = replace_a_pool_child(worker)
    wait_until(
        lambda: not broker_sockets(child) & broker_sockets(worker),
        timeout=15,
        describe=lambda: broker_sockets(child) & broker_sockets(worker),
    )

    run = run_failover_under_load(with_options, "failover", unreachable=UNREACHABLE)
    report(run.summary("failover, with the broker options"))

    assert run.lost == [], run.summary("lost")
    assert run.recovery_seconds is not None and run.recovery_seconds <= RECOVERY_BOUND, run.summary("slow")
    # Producers wait a socket timeout and retry on the moved name, never the whole outage.
    assert run.enqueue_errors == {} and not run.producer_hung, run.enqueue_errors
    assert run.longest_enqueue_wait < RECOVERY_BOUND, run.summary("producer")
    # acks_late's documented redelivery: only what a worker held when its connection broke.
    assert all(run.in_flight_at_failover(key) for key in run.duplicated), run.duplicated

    # kombu's Redis transport takes a message off its queue (BRPOP), then records it as unacked
    # with a second write: a worker may take one in the moment the primary stops answering.
    # Failing back, that moment is made certain; proj/broker.py's transport retries the record
    # and the task runs (without it, bench/failover.py --releases unrecorded: lost).
    where = fail_over_as_a_worker_takes_a_task(with_options, "taken-at-failover")
    assert where is None, f"the task a worker took at the failover did not run: {where}"


def test_without_the_options_workers_and_producers_hang_while_the_old_primary_is_silent(
    without_options: Deployment, report
) -> None:
    run = run_failover_under_load(without_options, "control", unreachable=UNREACHABLE, settle=CONTROL_SETTLE)
    report(run.summary(f"failover, without the broker options (lost: not run {CONTROL_SETTLE:.0f} s after the load)"))

    # Nothing notices the silent connections: every worker and the producer wait until the old
    # primary answers again (ElastiCache's replaced node may never answer).
    assert run.recovery_seconds is None or run.recovery_seconds >= UNREACHABLE, run.summary("recovered early")
    assert run.longest_enqueue_wait >= UNREACHABLE - 2 or run.producer_hung, run.summary("producer")
