"""Time to recover from a broker failover: the rendered stack on this host (the e2e harness: two
TLS redis-servers behind the endpoint name, workers and a producer from the rendered units),
ElastiCache's TestFailover as tests/e2e/test_failover.py does it, under a steady task load.
Prints, for the release with all docs/failover.md has projects copy (broker options, pool
handler, broker transport) and (without --quick) for the same release without the handler (its
forked pool children keep the worker's broker sockets) and with all of it undone, side by side:
seconds until each worker consumes again, the longest a producer's delay() took, tasks lost and
duplicated; then, failing back in the moment a worker takes a task, whether that task ran (the
record docs/failover.md's transport retries; `unrecorded` is the release with kombu's own).
--runs N runs each release N times, the releases alternating; --releases picks some of them.

Requests failed per deploy with the drain vs the in-place restart: bench/web_restarts.py.

    .venv/bin/python bench/failover.py [--quick] [--runs N] [--releases with,unfixed,without,unrecorded]

--quick (what CI runs, tests/benches.py): the release with the options only, a shorter outage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from e2e_harness.deployment import Deployment
from e2e_harness.failover import (
    UNFIXED_POOL,
    UNRECORDED,
    WITHOUT_FAILOVER_OPTIONS,
    FailoverRun,
    fail_over_as_a_worker_takes_a_task,
    run_failover_under_load,
    sample_app_variant,
)

FULL_UNREACHABLE, QUICK_UNREACHABLE = 30.0, 10.0
# name (also the task keys' prefix) -> (label, what is appended to the sample project's files)
RELEASES: dict[str, tuple[str, dict[str, str]]] = {
    "with": ("with all of docs/failover.md", {}),
    "unfixed": ("the options, no handler", UNFIXED_POOL),
    "without": ("none of docs/failover.md", WITHOUT_FAILOVER_OPTIONS),
    "unrecorded": ("all but the broker transport", UNRECORDED),
}


def measure(name: str, unreachable: float, taken: bool) -> tuple[FailoverRun, str]:
    """The failover under load, then (`taken`) one back as a worker takes a task: where that
    task is ("ran" or where the broker has it)."""
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
        Path(scratch).chmod(0o755)
        appended = RELEASES[name][1]
        source = sample_app_variant(Path(scratch), appended) if appended else None
        stack = Deployment.create(replicated=True, source=source)
        try:
            stack.boot()
            run = run_failover_under_load(stack, name, unreachable=unreachable, after=unreachable + 10)
            if not taken:
                return run, "not tried"
            return run, fail_over_as_a_worker_takes_a_task(stack, f"{name}-taken") or "ran"
        finally:
            stack.close()


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _releases(value: str) -> list[str]:
    names = value.split(",")
    unknown = [n for n in names if n not in RELEASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown release {unknown[0]!r}; allowed: {', '.join(RELEASES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the release with the options only, a 10 s outage")
    parser.add_argument("--runs", type=int, default=1, choices=range(1, 11), metavar="N", help="runs of each (1-10)")
    parser.add_argument(
        "--releases", type=_releases, default=list(RELEASES), help="comma-separated, of " + ",".join(RELEASES)
    )
    args = parser.parse_args(argv)
    unreachable = QUICK_UNREACHABLE if args.quick else FULL_UNREACHABLE
    releases = ["with"] if args.quick else args.releases
    print(f"broker failover, old primary unreachable for {unreachable:.0f} s, then read-only; one task every 0.1 s")
    for n in range(1, args.runs + 1):
        for name in releases:
            run, taken = measure(name, unreachable, taken=not args.quick)
            workers = ", ".join(_seconds(s) for _, s in sorted(run.recovery.items()))
            print(
                f"  {RELEASES[name][0]:<30} run {n}: workers consuming again after {_seconds(run.recovery_seconds)} "
                f"({workers}), longest delay() {run.longest_enqueue_wait:4.1f} s, {len(run.enqueue_errors)} enqueue "
                f"errors, {len(run.lost)} tasks lost, {len(run.duplicated)} duplicated (of {len(run.sent)}); "
                f"failing back as a worker takes a task, it: {taken}",
                flush=True,
            )
            for where, keys in run.lost_by_place().items():
                print(f"    lost {len(keys)} {where}: {', '.join(keys)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
