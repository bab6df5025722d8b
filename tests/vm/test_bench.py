"""bench/vm_boot.py once with its smallest settings (a trivial boot, then web), so the boot ratio
the docs quote stays reproducible (tests/benches.py)."""

from __future__ import annotations

from tests.benches import benches_of, run_quick


def test_vm_boot_runs_once_with_its_smallest_settings() -> None:
    assert benches_of("vm") == ["vm_boot.py"]
    printed = run_quick("vm_boot.py", timeout=3600)
    assert "x the trivial boot" in printed and "where the time goes, web" in printed
