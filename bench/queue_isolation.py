"""Queue isolation: short-task latency while the long queue is saturated, for the program's
layout vs the naive one of the guide's problem list, side by side in one run.

ours:  the rendered worker units as they are: a `default` worker and a `long` worker, prefetch
       multiplier 1, generate_report routed to `long`.
naive: one worker on one queue with Celery's default prefetch multiplier (4), no routes, the
       same total concurrency.
Both run on one simulated worker machine (the e2e harness: the rendered units, TLS Redis, AUTH).
Latency = first start of the task (its ledger entry) minus the moment it was sent.

    .venv/bin/python bench/queue_isolation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass

from e2e_harness.deployment import CELERY, Deployment, wait_until


@dataclass(frozen=True)
class Workload:
    long_tasks: int
    long_seconds: float
    short_tasks: int
    short_gap: float


FULL = Workload(long_tasks=12, long_seconds=2.0, short_tasks=150, short_gap=0.03)
QUICK = Workload(long_tasks=2, long_seconds=0.5, short_tasks=10, short_gap=0.03)
NAIVE_PREFETCH = 4  # Celery's default worker_prefetch_multiplier


def producer_code(tag: str, load: Workload) -> str:
    return f"""
import json, time
from myapp.tasks import generate_report, record_execution
for n in range({load.long_tasks}):
    generate_report.delay("{tag}-long-%d" % n, {load.long_seconds})
time.sleep(0.5)
sent = {{}}
for n in range({load.short_tasks}):
    key = "{tag}-short-%d" % n
    sent[key] = time.time()
    record_execution.delay(key, 0.0)
    time.sleep({load.short_gap})
print(json.dumps(sent))
"""


def latencies(stack: Deployment, tag: str, load: Workload, extra_env: dict[str, str]) -> list[float]:
    result = stack.django(producer_code(tag, load), extra_env=extra_env, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"producer failed: {result.stderr[-2000:]}")
    sent = json.loads(result.stdout.strip().splitlines()[-1])
    ledger = stack.ledger()
    wait_until(lambda: all(ledger.hget("ledger:started", key) for key in sent), timeout=300, interval=0.5)
    first: dict[str, float] = {}
    for raw in ledger.lrange("ledger:started:log", 0, -1):
        entry = json.loads(raw)
        if entry["key"] in sent:
            first.setdefault(entry["key"], entry["at"])
    return sorted(first[key] - sent[key] for key in sent)


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/queue_isolation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings: one pass, to prove the bench runs (tests/e2e/test_benches.py)",
    )
    load = QUICK if parser.parse_args(argv).quick else FULL
    stack = Deployment.create(worker_count=1, web_count=0)
    try:
        stack.boot()
        machine = stack.by_role("worker")[0]
        machine.stop("celery-beat.service")  # no heartbeats in the measurement
        queues = {q["name"]: q for q in stack.overrides["worker.queues"]}
        total = sum(q["concurrency"] for q in queues.values())

        ours = latencies(stack, "ours", load, {})

        for unit in [u for u in machine.units if u.startswith("celery-worker-")]:
            machine.kill(unit)
        stack.redis.client(0).delete("long", "default")  # what ours left queued
        naive_env = {"CELERY_TASK_ROUTES": "{}"}
        argv = [
            CELERY,
            "--app",
            "proj",
            "worker",
            "--queues",
            "default",
            "--hostname",
            f"naive@{machine.hostname}",
            "--concurrency",
            str(total),
            "--prefetch-multiplier",
            str(NAIVE_PREFETCH),
            "--loglevel",
            "INFO",
        ]
        machine.start("celery-worker-default.service", naive_env, as_name="naive-worker", argv=argv)
        stack.wait_for_workers({f"naive@{machine.hostname}"})
        naive = latencies(stack, "naive", load, naive_env)
    finally:
        stack.close()

    print(
        f"queue isolation: {load.long_tasks} long tasks x {load.long_seconds} s queued, "
        f"then {load.short_tasks} short tasks "
        f"every {load.short_gap * 1000:.0f} ms; total concurrency {total} in both layouts"
    )
    for name, values in (
        ("ours  (default + long queue, prefetch 1)", ours),
        (f"naive (one queue, prefetch {NAIVE_PREFETCH})", naive),
    ):
        print(
            f"  {name}: p50 {percentile(values, 0.5) * 1000:8.1f} ms  p99 {percentile(values, 0.99) * 1000:8.1f} ms"
            f"  mean {statistics.mean(values) * 1000:8.1f} ms"
        )
    ratio = percentile(ours, 0.99) / percentile(naive, 0.99)
    print(f"headline: short-task p99 ours/naive = {ratio:.4f} (1/{1 / ratio:.0f}; target <= 1/20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
