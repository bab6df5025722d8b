"""How long `python -m ops verify`'s checks take on real processes: the e2e stack (tests/e2e)
booted on this host, the verify scripts run through the local executor, ROUNDS times. Prints
the median seconds per check and role and the wall time per instance script; exits 0.

Use the figures to size --check-timeout and --command-timeout; over SSM add the agent's
delivery and polling (seconds, not measurable here: there is no AWS account).
Run: .venv/bin/python bench/ops_verify_local.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from e2e_harness.deployment import Deployment

from ops.verify import VerifyOptions, verify_instance
from tests.e2e.test_ops_verify import SYSTEMCTL_SHIM, executor_for, instances_of

ROUNDS = 5
QUICK_ROUNDS = 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/ops_verify_local.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smallest settings: one pass, to prove the bench runs (tests/e2e/test_benches.py)",
    )
    rounds = QUICK_ROUNDS if parser.parse_args(argv).quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="ops-bench-shim-") as shim:
        measure(Path(shim), rounds)


def measure(shim_dir: Path, rounds: int) -> None:
    shim_dir.chmod(0o755)
    (shim_dir / "systemctl").write_text(SYSTEMCTL_SHIM)
    (shim_dir / "systemctl").chmod(0o755)
    stack = Deployment.create()
    try:
        stack.boot()
        executor, options = executor_for(stack, shim_dir), VerifyOptions(check_timeout=10)
        checks: dict[tuple[str, str], list[float]] = defaultdict(list)
        scripts: dict[str, list[float]] = defaultdict(list)
        failed = 0
        for _ in range(rounds):
            for instance in instances_of(stack):
                started = time.monotonic()
                rows = verify_instance(executor, instance, options, beat_running=True)
                scripts[instance.role].append(time.monotonic() - started)
                for row in rows:
                    checks[(instance.role, row.check)].append(row.seconds)
                    failed += not row.ok
        print(
            f"ops verify through the local executor, {rounds} rounds over {len(stack.machines)} machines "
            f"({failed} failed checks)"
        )
        for (role, check), times in sorted(checks.items()):
            print(f"  {role:<7} {check:<12} median {statistics.median(times):.2f} s  max {max(times):.2f} s")
        for role, times in sorted(scripts.items()):
            print(f"  {role:<7} whole script median {statistics.median(times):.2f} s  max {max(times):.2f} s")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
