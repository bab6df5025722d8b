"""Time to recover from a broker failover: the rendered stack on this host (the e2e harness: two
TLS redis-servers behind the endpoint name, workers and a producer from the rendered units),
ElastiCache's TestFailover as tests/e2e/test_failover.py does it, under a steady task load.
Prints, for the release with the broker options of docs/failover.md and (without --quick) for
the same release with them undone, side by side: seconds until every worker consumes again,
the longest a producer's delay() took, tasks lost and duplicated.

Requests failed per deploy with the drain vs the in-place restart: bench/web_restarts.py.

    .venv/bin/python bench/failover.py [--quick]

--quick (what CI runs, tests/benches.py): the release with the options only, a shorter outage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from e2e_harness.deployment import Deployment
from e2e_harness.failover import FailoverRun, run_failover_under_load, sample_app_without_failover_options

FULL_UNREACHABLE, QUICK_UNREACHABLE = 30.0, 10.0


def measure(label: str, unreachable: float, source: Path | None) -> FailoverRun:
    stack = Deployment.create(replicated=True, source=source)
    try:
        stack.boot()
        return run_failover_under_load(stack, label, unreachable=unreachable, after=unreachable + 10)
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the release with the options only, a 10 s outage")
    quick = parser.parse_args(argv).quick
    unreachable = QUICK_UNREACHABLE if quick else FULL_UNREACHABLE
    runs = {"with the options   ": measure("with", unreachable, None)}
    if not quick:
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
            Path(scratch).chmod(0o755)
            runs["without the options"] = measure(
                "without", unreachable, sample_app_without_failover_options(Path(scratch))
            )
    print(f"broker failover, old primary unreachable for {unreachable:.0f} s, then read-only; one task every 0.1 s")
    for label, run in runs.items():
        recovery = run.recovery_seconds
        print(
            f"  {label}: workers consuming again after "
            + (f"{recovery:5.1f} s" if recovery is not None else "never")
            + f", longest delay() {run.longest_enqueue_wait:5.1f} s, {len(run.enqueue_errors)} enqueue errors, "
            f"{len(run.lost)} tasks lost, {len(run.duplicated)} duplicated (of {len(run.sent)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
