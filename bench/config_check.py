"""What checking the config before the first resource costs on the prod stack file: `load_settings`
(msgspec and the section rules) and the build step's render of each kind's user-data once with a
placeholder Redis endpoint (program.py `machine_problems`), side by side.
Alternating in-process runs, medians reported; compare with bench/program_eval.py's whole run.

    .venv/bin/python bench/config_check.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from config import load_settings
from program import machine_problems

REPO = Path(__file__).resolve().parents[1]

RUNS = 200
QUICK_RUNS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/config_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest settings, once: what CI runs (tests/benches.py)")
    runs = QUICK_RUNS if parser.parse_args(argv).quick else RUNS
    config = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    # As the engine passes them: objects as JSON text.
    raw = {k.split(":", 1)[1]: json.dumps(v) for k, v in config.items() if k.startswith("django-stack:")}
    settings = load_settings(raw, stack="prod", region="eu-west-1")  # warm: imports, template cache
    whole: list[float] = []
    render: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        machine_problems(load_settings(raw, stack="prod", region="eu-west-1"))
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        machine_problems(settings)
        render.append(time.perf_counter() - started)
    load_ms, render_ms = statistics.median(whole) * 1000, statistics.median(render) * 1000
    print(f"config check: {runs} alternating in-process runs, prod stack file")
    print(f"  load_settings + machine_problems:          median {load_ms:.2f} ms")
    print(f"  of which the placeholder user-data render: median {render_ms:.2f} ms ({render_ms / load_ms:.0%})")
    print(f"  the rest (msgspec + section rules):        median {load_ms - render_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
