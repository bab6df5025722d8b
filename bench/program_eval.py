"""Program evaluation time: the whole process that renders the prod stack under mocks
(`python -m offline_render --stack prod --out DIR`) vs the floor any Pulumi program with
these providers pays: `python -c 'import pulumi, pulumi_aws'` plus touching every
pulumi_aws submodule the components use (pulumi_aws loads them lazily). Alternating runs,
medians reported.

    .venv/bin/python bench/program_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUNS = 7
QUICK_RUNS = 1


def aws_names() -> list[str]:
    """Every `aws.<module>.<Name>` the program's sources use (pulumi_aws imports a submodule
    only when one of its names is first touched, so the floor touches exactly these)."""
    sources = [REPO / "__main__.py", REPO / "program.py", *sorted((REPO / "components").glob("*.py"))]
    pattern = r"\baws\.([a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_]*)(?![\w*])"  # not prose like "Group*Rule"
    return sorted({f"{m}.{n}" for path in sources for m, n in re.findall(pattern, path.read_text())})


def floor_code(names: list[str]) -> str:
    touches = "; ".join(f"pulumi_aws.{name}" for name in names)
    return f"import pulumi, pulumi_aws; {touches}"


# Both processes as a user runs them, with Python's bytecode cache: the floor's modules were
# compiled when pip installed them, the program's are on the warm-up run. A shell with
# PYTHONDONTWRITEBYTECODE set (as the development sessions' are) made every render compile the
# program's modules again (~0.15-0.25 s of CPU: 1.25x against 1.15x, 2026-12-03).
CACHING_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def wall_time(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=REPO, check=True, capture_output=True, env=CACHING_ENV)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/program_eval.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest settings, once: what CI runs (tests/benches.py)")
    runs = QUICK_RUNS if parser.parse_args(argv).quick else RUNS
    names = aws_names()
    modules = sorted({name.split(".")[0] for name in names})
    floor_args = [sys.executable, "-c", floor_code(names)]
    times: dict[str, list[float]] = {"render": [], "floor": []}
    with tempfile.TemporaryDirectory() as out:
        render_args = [sys.executable, "-m", "offline_render", "--stack", "prod", "--out", out]
        wall_time(render_args)  # warm the page cache and __pycache__ for both
        wall_time(floor_args)
        for _ in range(runs):
            times["render"].append(wall_time(render_args))
            times["floor"].append(wall_time(floor_args))
    render, floor = statistics.median(times["render"]), statistics.median(times["floor"])
    print(f"program evaluation: {runs} alternating runs each, whole-process wall time")
    print(
        f"  floor  (import pulumi, pulumi_aws + pulumi_aws.{{{', '.join(modules)}}}): "
        f"median {floor:.2f} s  (min {min(times['floor']):.2f})"
    )
    print(f"  render (python -m offline_render --stack prod): median {render:.2f} s  (min {min(times['render']):.2f})")
    print(f"headline: render / floor = {render / floor:.2f}x (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
