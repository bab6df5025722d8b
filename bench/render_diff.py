"""What a reviewer waits for: `python -m offline_render --compare` (render the stack, replace the
output directory, print what changed), whole process, against a previous render's directory and
against a git revision (HEAD: rendered from a copy of its files, in a second process alongside),
side by side with the plain render. Alternating runs, medians reported (target: the diff < 5 s).

    .venv/bin/python bench/render_diff.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from program_eval import wall_time  # bench/ is the script's own directory, first on sys.path

RUNS = 5
QUICK_RUNS = 1
TARGET_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/render_diff.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest settings, once: what CI runs (tests/benches.py)")
    runs = QUICK_RUNS if parser.parse_args(argv).quick else RUNS
    with tempfile.TemporaryDirectory(prefix="render-diff-bench-") as scratch:
        base, out = Path(scratch) / "base", str(Path(scratch) / "out")
        render = [sys.executable, "-m", "offline_render", "--stack", "prod", "--out"]
        wall_time([*render, str(base)])  # the previous render; also warms the page cache
        commands = {
            "render only": [*render, out],
            "render + diff against a directory": [*render, out, "--compare", str(base)],
            "render + diff against git HEAD": [*render, out, "--compare", "HEAD"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(wall_time(command))
    print(f"render diff: prod stack, {runs} alternating runs each, whole-process wall time")
    for name, values in times.items():
        print(f"  {name:<36} median {statistics.median(values):.2f} s  (max {max(values):.2f} s)")
    worst = max(statistics.median(times[name]) for name in commands if "diff" in name)
    verdict = "meets" if worst < TARGET_SECONDS else "misses"
    print(f"headline: slowest diff median {worst:.2f} s ({verdict} < {TARGET_SECONDS:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
