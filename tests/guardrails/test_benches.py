"""Every benchmark runs: the pure ones here, once with their smallest settings; the others in the
lane that can run them (tests/benches.py), and each of those at least imports and takes --quick here."""

from __future__ import annotations

import re
import sys

import pytest

from tests import REPO_ROOT
from tests.benches import BENCH_DIR, LANE_OF_BENCH, benches_of, run_bench, run_quick
from tests.conftest import LANES


def test_every_bench_belongs_to_a_lane_that_exists() -> None:
    # bench/_*.py: what several benches share, no bench of its own.
    assert sorted(LANE_OF_BENCH) == sorted(p.name for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))
    assert set(LANE_OF_BENCH.values()) <= set(LANES.values())


@pytest.mark.parametrize("name", sorted(LANE_OF_BENCH))
def test_every_bench_imports_and_takes_quick(name: str) -> None:
    assert "--quick" in run_bench(name, "--help", timeout=120)


@pytest.mark.parametrize("name", benches_of("guardrails"))
def test_runs_once_with_its_smallest_settings(name: str) -> None:
    run_quick(name, timeout=300)


def test_the_unit_lane_bench_runs_the_lanes_own_selection() -> None:
    """bench/unit_lane_ab.py leaves out scripts/test.sh's setup, not its selection: the same
    marker and xdist options, or it times another command than the lane."""
    sys.path.insert(0, str(BENCH_DIR))
    try:
        from unit_lane_ab import LANE
    finally:
        sys.path.remove(str(BENCH_DIR))
    script = (REPO_ROOT / "scripts" / "test.sh").read_text()
    (options,) = re.findall(r"^  unit \| guardrails\) selection=\((.+)\) ;;$", script, flags=re.M)
    assert options.replace('"$lane"', "unit").split() == LANE[: len(options.split())]
