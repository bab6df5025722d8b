"""Lets the benchmarks use the end-to-end harness (tests/e2e/e2e_harness) and the program."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "tests" / "e2e"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
