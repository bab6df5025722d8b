"""TLS + AUTH cost: Celery round trips per second over rediss:// with AUTH (what the program
ships) vs plain redis://, against the same redis-server in the same run, plus redis-benchmark
PING on both listeners as the broker's own ceiling.

A round trip: Django publishes healthcheck_task, a worker runs it (one ledger write), the result
comes back through the result backend. Both workers run side by side from the same unit (the
plain one on broker/result dbs 3/4, so their queues are separate); measurements alternate
(tls, plain, tls, plain, ...). This machine's CPUs are shared with other busy sessions, so the
headline compares the best round of each mode (load from neighbours only ever slows a round
down); medians are printed too.

    .venv/bin/python bench/tls_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.ports import free_port
from e2e_harness.redis_server import PORT

# (round trips per measurement, rounds per mode, redis-benchmark PINGs): full and --quick.
FULL = (300, 6, 100_000)
QUICK = (20, 1, 1_000)
QUEUES = [
    {"name": "default", "concurrency": 4, "softTimeLimit": 6, "hardTimeLimit": 8},
    {
        "name": "long",
        "concurrency": 1,
        "softTimeLimit": 8,
        "hardTimeLimit": 10,
        "routes": ["myapp.tasks.generate_report"],
    },
]
PRODUCER = """
import time
from myapp.tasks import healthcheck_task
healthcheck_task.delay().get(timeout=30)  # connections warm
started = time.perf_counter()
results = [healthcheck_task.delay() for _ in range({tasks})]
for result in results:
    result.get(timeout=120)
print({tasks} / (time.perf_counter() - started))
"""
UNIT = "celery-worker-default.service"


def connections_received(stack: Deployment) -> int:
    return int(stack.redis.client().info("stats")["total_connections_received"])


def round_trips_per_second(stack: Deployment, env: dict[str, str], tasks: int) -> tuple[float, int]:
    """(round trips per second, connections Redis accepted meanwhile: handshakes paid)."""
    before = connections_received(stack)
    result = stack.django(PRODUCER.format(tasks=tasks), extra_env=env, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"producer failed: {result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1]), connections_received(stack) - before - 1


def ping_ceiling(stack: Deployment, tls: bool, pings: int) -> float:
    redis = stack.redis
    args = ["redis-benchmark", "-h", redis.host, "-a", redis.password, "-t", "ping", "-n", str(pings), "-c", "50", "-q"]
    args += ["-p", str(PORT), "--tls", "--cacert", str(redis.cert.ca_file)] if tls else ["-p", str(redis.plain_port)]
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rates = [float(rate) for rate in re.findall(r"PING_\w+: ([\d.]+) requests per second", output)]
    return max(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/tls_cost.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings: one pass, to prove the bench runs (tests/e2e/test_benches.py)",
    )
    tasks, rounds, pings = QUICK if parser.parse_args(argv).quick else FULL
    stack = Deployment.create(worker_count=1, web_count=0, queues=QUEUES, plain_port=free_port())
    try:
        stack.boot()
        machine = stack.by_role("worker")[0]
        machine.stop("celery-beat.service")
        redis = stack.redis
        plain = {"CELERY_BROKER_URL": redis.url(3, tls=False), "CELERY_RESULT_BACKEND": redis.url(4, tls=False)}
        machine.start(UNIT, plain, as_name="plain-worker")
        wait_until(lambda: " ready." in machine.log("plain-worker"), timeout=60)
        modes = {"rediss:// + AUTH": {}, "redis:// + AUTH": plain}
        rates: dict[str, list[float]] = {name: [] for name in modes}
        connections: dict[str, list[int]] = {name: [] for name in modes}
        for _ in range(rounds):
            for name, env in modes.items():
                rate, opened = round_trips_per_second(stack, env, tasks)
                rates[name].append(rate)
                connections[name].append(opened)
        ping = {"TLS": ping_ceiling(stack, True, pings), "plain": ping_ceiling(stack, False, pings)}
    finally:
        stack.close()

    print(
        f"TLS + AUTH cost: {tasks} round trips per measurement, {rounds} rounds per mode, "
        f"worker concurrency {QUEUES[0]['concurrency']}, same redis-server"
    )
    for name, values in rates.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {name:18s} connections opened per round of {tasks}: {max(connections[name])} at most")
        print(f"  {name:18s} best {max(values):7.1f}  median {statistics.median(values):7.1f} tasks/s  (runs: {runs})")
    print(
        f"  redis-benchmark PING (50 clients): TLS {ping['TLS']:,.0f} req/s, plain {ping['plain']:,.0f} req/s "
        f"(the broker's ceiling, {ping['TLS'] / ping['plain']:.2f}x)"
    )
    medians = statistics.median(rates["rediss:// + AUTH"]) / statistics.median(rates["redis:// + AUTH"])
    print(f"  ratio of medians: {medians:.2f}x")
    ratio = max(rates["rediss:// + AUTH"]) / max(rates["redis:// + AUTH"])
    print(f"headline: round trips/s rediss:// vs redis://, best rounds = {ratio:.2f}x (target >= 0.85x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
