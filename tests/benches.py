"""Every bench/ script and the lane that runs it once with its smallest settings (`--quick`), so a
bench that crashes fails CI instead of waiting for the next person who wants its figure.
Shared by tests/guardrails/test_benches.py, tests/e2e/test_benches.py and tests/vm/test_bench.py."""

from __future__ import annotations

import re
import subprocess
import sys

from tests import REPO_ROOT

BENCH_DIR = REPO_ROOT / "bench"
# The lane whose machine has what the bench needs: guardrails for pure Python (no root, no daemon);
# e2e for the benches that run the rendered stack on this host (root: namespaces, real daemons);
# vm for the one that boots VMs.
LANE_OF_BENCH = {
    "config_check.py": "guardrails",
    "program_eval.py": "guardrails",
    "render_diff.py": "guardrails",
    "scaling_sim.py": "guardrails",
    "web_restarts.py": "guardrails",
    "vm_boot_ab.py": "guardrails",  # --quick renders both sides and boots nothing
    "unit_lane_ab.py": "guardrails",  # --quick runs one test module a side
    "failover.py": "e2e",
    "ops_verify_local.py": "e2e",
    "queue_isolation.py": "e2e",
    "tls_cost.py": "e2e",
    "vm_boot.py": "vm",
}


def benches_of(lane: str) -> list[str]:
    return sorted(name for name, owner in LANE_OF_BENCH.items() if owner == lane)


def run_bench(name: str, *args: str, timeout: float) -> str:
    """Runs bench/<name> as its docstring says (the venv's python, from the repository); returns
    what it printed, after checking that it exited 0."""
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / name), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    command = " ".join([f"bench/{name}", *args])
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def run_quick(name: str, timeout: float) -> str:
    """The bench once with its smallest settings; it must print figures (a number with a unit)."""
    printed = run_bench(name, "--quick", timeout=timeout)
    assert FIGURE.search(printed), f"bench/{name} --quick printed no figure:\n{printed}"
    return printed


FIGURE = re.compile(r"\d(\.\d+)? ?(s|ms|x|%|tasks/s|req/s)(\b|$|\))")
