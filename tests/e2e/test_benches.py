"""The benchmarks that run the rendered stack on this host, once each with their smallest settings
(tests/benches.py; tests/guardrails/test_benches.py checks that every bench has a lane)."""

from __future__ import annotations

import pytest

from tests.benches import benches_of, run_quick


@pytest.mark.parametrize("name", benches_of("e2e"))
def test_runs_once_with_its_smallest_settings(name: str) -> None:
    run_quick(name, timeout=900)
