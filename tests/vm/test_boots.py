"""The lane's first test: it starts every boot the selected tests read (tests/vm/conftest.py).
In a session that runs other lanes too it is moved to the session's start, so the boots run
beside those lanes' tests instead of after them."""

from __future__ import annotations

import pytest

from tests.vm.conftest import AFTER, WANTED, Boots


def test_every_boot_the_selected_tests_read_is_started(boots: Boots, request: pytest.FixtureRequest) -> None:
    wanted = request.config.stash[WANTED]
    assert set(boots.started) == wanted | {AFTER[name] for name in wanted if name in AFTER}
