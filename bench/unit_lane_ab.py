"""Unit lane A/B: the unit lane run alternately in this tree (A) and in a git revision's (B), in
one run, so that the lane's time is measured against a reference on the same machine in the same
minutes (issue 25.2: each session's machine runs the same lane 1.5-3x faster or slower than
another's; a ratio to a fixed revision carries from one machine to the next).

    .venv/bin/python bench/unit_lane_ab.py [--against REV] [--rounds N] [--quick]

Each run is the pytest command `bash scripts/test.sh unit` runs (xdist over every core, each
xdist group on one worker), with the setup left out: both sides use this checkout's venv, and
the setup would install REV's requirements into it. Runs go A B, B A, ... after one untimed run
a side (it compiles the tree's bytecode, as a checkout's first run does). Printed per run: its
wall time, the CPU of pytest and every process it waited for, and the tests it passed; then each
side's means and A / B per round.

REV is HEAD unless given: the change not yet committed. It is checked out in a clone sharing this
repository's objects, with this checkout's venv, its own modules first on the path (the venv's
editable install maps the packages to this checkout). --quick: one round of one test module a
side, no untimed runs (the guardrails lane runs it so: tests/benches.py).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _revision import REPO, order, revision_checkout  # bench/, this script's directory

# scripts/test.sh's selection for the lane; -p no:cacheprovider: neither side writes .pytest_cache.
LANE = ["-m", "unit", "-n", "auto", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider"]
QUICK_TESTS = ["tests/test_config.py"]
PASSED = re.compile(r"(\d+) passed")


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    passed: int


def run_lane(tree: Path, scratch: Path, name: str, tests: list[str]) -> Run:
    """The lane in `tree`, as scripts/test.sh runs it: its own TMPDIR, bytecode written."""
    tmp = Path(tempfile.mkdtemp(prefix=f"lane-{name}-", dir=scratch))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    # The tree's e2e harness too: the editable install maps `e2e_harness` to this checkout's.
    env |= {"TMPDIR": str(tmp), "PYTHONPATH": f"{tree}:{tree / 'tests' / 'e2e'}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *LANE, *tests], cwd=tree, env=env, capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"unit_lane_ab.py: the lane failed in {name}'s tree ({tree}):\n{done.stdout[-3000:]}")
    found = PASSED.findall(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, int(found[-1]) if found else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/unit_lane_ab.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", metavar="REV", help="B's git revision (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds, at least 1 (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"one round of {' '.join(QUICK_TESTS)}, nothing untimed")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    rounds, tests = (1, QUICK_TESTS) if args.quick else (args.rounds, [])

    with tempfile.TemporaryDirectory(prefix="unit-lane-ab-") as name:
        scratch = Path(name)
        revision, commit = revision_checkout(args.against, scratch, "unit_lane_ab.py")
        sides = ((REPO, "A (this tree)"), (revision, f"B ({args.against}, {commit[:12]})"))
        what = " ".join(tests) or "the unit lane"
        print(
            f"unit_lane_ab: {what}, {rounds} round{'s' if rounds > 1 else ''}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        if not args.quick:
            for tree, side in sides:
                warm = run_lane(tree, scratch, side[0], tests)
                print(f"  {side}: untimed first run {warm.seconds:.1f} s")
        runs: list[list[Run]] = [[], []]
        for index in order(rounds):
            tree, side = sides[index]
            run = run_lane(tree, scratch, side[0], tests)
            runs[index].append(run)
            print(f"  {side}: {run.seconds:.1f} s, {run.cpu_seconds:.1f} s CPU, {run.passed} passed")
    for (_, side), taken in zip(sides, runs, strict=True):
        print(
            f"{side}: mean {statistics.mean(r.seconds for r in taken):.1f} s, "
            f"{statistics.mean(r.cpu_seconds for r in taken):.1f} s CPU"
        )
    walls = [a.seconds / b.seconds for a, b in zip(*runs, strict=True)]
    cpus = [a.cpu_seconds / b.cpu_seconds for a, b in zip(*runs, strict=True)]
    print(
        f"A / B per round: wall {', '.join(f'{r:.2f}x' for r in walls)}; CPU {', '.join(f'{r:.2f}x' for r in cpus)}; "
        f"means {statistics.mean(walls):.2f}x wall, {statistics.mean(cpus):.2f}x CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
