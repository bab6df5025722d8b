"""Time to recover from a broker failover: the rendered stack on this host (the e2e harness: two
TLS redis-servers behind the endpoint name, workers and a producer from the rendered units),
ElastiCache's TestFailover as tests/e2e/test_failover.py does it, under a steady task load.
Prints, for the release with the broker options of docs/failover.md and (without --quick) for
the same release with its pool forked (Celery's default, before the fix docs/failover.md
explains) and with the options undone, side by side: seconds until each worker consumes again,
the longest a producer's delay() took, tasks lost and duplicated; --runs times each.

Requests failed per deploy with the drain vs the in-place restart: bench/web_restarts.py.

    .venv/bin/python bench/failover.py [--quick] [--runs N]

--quick (what CI runs, tests/benches.py): the release with the options only, a shorter outage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from e2e_harness.deployment import Deployment
from e2e_harness.failover import (
    FORKED_POOL,
    WITHOUT_FAILOVER_OPTIONS,
    FailoverRun,
    run_failover_under_load,
    sample_app_with_settings,
)

FULL_UNREACHABLE, QUICK_UNREACHABLE = 30.0, 10.0
# (task key prefix, label, settings appended to the sample app's production settings or None)
RELEASES = [
    ("with", "with the options        ", None),
    ("forked", "the options, pool forked", FORKED_POOL),
    ("without", "without the options     ", WITHOUT_FAILOVER_OPTIONS),
]


def measure(prefix: str, unreachable: float, settings: str | None) -> FailoverRun:
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
        Path(scratch).chmod(0o755)
        source = None if settings is None else sample_app_with_settings(Path(scratch), settings)
        stack = Deployment.create(replicated=True, source=source)
        try:
            stack.boot()
            return run_failover_under_load(stack, prefix, unreachable=unreachable, after=unreachable + 10)
        finally:
            stack.close()


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the release with the options only, a 10 s outage")
    parser.add_argument("--runs", type=int, default=1, choices=range(1, 11), metavar="N", help="runs of each (1-10)")
    args = parser.parse_args(argv)
    unreachable = QUICK_UNREACHABLE if args.quick else FULL_UNREACHABLE
    releases = RELEASES[:1] if args.quick else RELEASES
    print(f"broker failover, old primary unreachable for {unreachable:.0f} s, then read-only; one task every 0.1 s")
    for prefix, label, settings in releases:
        for n in range(1, args.runs + 1):
            run = measure(prefix, unreachable, settings)
            workers = ", ".join(_seconds(s) for _, s in sorted(run.recovery.items()))
            print(
                f"  {label} run {n}: workers consuming again after {_seconds(run.recovery_seconds)} ({workers}), "
                f"longest delay() {run.longest_enqueue_wait:4.1f} s, {len(run.enqueue_errors)} enqueue errors, "
                f"{len(run.lost)} tasks lost, {len(run.duplicated)} duplicated (of {len(run.sent)})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
