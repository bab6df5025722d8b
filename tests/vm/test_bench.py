"""bench/vm_boot.py once with its smallest settings (a trivial boot, then web into a running
stack), so the boot ratio the docs quote stays reproducible (tests/benches.py). It runs as one of
the lane's boots, beside another (tests/vm/conftest.py): its ratio compares boots of the same run."""

from __future__ import annotations

import re

import pytest

from tests.benches import benches_of
from tests.vm.conftest import BENCH, Boots


@pytest.mark.boots(BENCH)
def test_vm_boot_runs_once_with_its_smallest_settings(boots: Boots) -> None:
    assert benches_of("vm") == ["vm_boot.py"]
    printed = boots.get(BENCH)
    assert "web, into a running stack: " in printed and "where the time goes, web" in printed
    # Booted as an instance launched into a running stack: the release command found its record.
    assert re.search(r"app-release-command: release \S+: already ran \(vm-test: recorded by", printed), printed
    # Each unit's own cost, from systemd's accounting: the release install's CPU is a figure.
    assert re.search(r"app-release\.service: [\d.]+ s, [\d.]+ s, [\d.]+ s of CPU", printed), printed
