"""Fixtures for the end-to-end suite: one stack per test session, rendered by the program and
run on this host from its own files (see e2e_harness/ and docs/e2e.md).

Everything here is real: redis-server with TLS only, moto_server as Parameter Store and S3, the
release downloaded and installed at boot by each machine's own app-release.service, gunicorn /
celery worker / celery beat started from their unit files. A missing component makes the
fixtures fail, never skip.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator

import pytest
from e2e_harness.deployment import Deployment, sweep_killed_runs
from e2e_harness.leftovers import entries_owned_by
from e2e_harness.machine import APP_UID
from e2e_harness.redis_server import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once per run, before any of its trees exists
        sweep_killed_runs()


@pytest.fixture(scope="session", autouse=True)
def no_temp_files_left_by_the_units() -> Iterator[None]:
    """The units' temp files in the host's /tmp, removed before this lane's first test (what a
    killed run left) and after its last, once every machine and bench of the run has stopped.
    One e2e session runs at a time on a machine (fixed ports, the app user's uid)."""
    remove_what_the_app_user_left()
    yield
    remove_what_the_app_user_left()


def remove_what_the_app_user_left(parent: str = "/tmp") -> None:
    for path in entries_owned_by(APP_UID, parent):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


@pytest.fixture(scope="session")
def stack() -> Iterator[Deployment]:
    """Rendered, files laid out, the release artifact in S3 and the live release parameter set;
    nothing installed or started yet."""
    deployment = Deployment.create()
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="session")
def running(stack: Deployment) -> Deployment:
    """Every machine booted the way its user-data does it; web answers and every worker pings."""
    stack.boot()
    return stack


@pytest.fixture()
def live(running: Deployment) -> Iterator[Deployment]:
    """The running stack, brought back to "every unit up" after a test that stops things. A
    unit that crashed during the test fails it here, with its log."""
    yield running
    exited = running.restore()
    assert not exited, "a unit exited without being stopped:\n" + "\n".join(exited)


@pytest.fixture(scope="session")
def rogue(running: Deployment) -> RedisServer:
    """A second TLS Redis with the right token but a certificate from a CA nobody trusts."""
    return running.start_rogue()


FAULT_REPORT: list[str] = []


@pytest.fixture()
def report() -> Callable[[str], None]:
    """Adds a line to the suite's closing summary (executions and duplicates under faults)."""
    return FAULT_REPORT.append


def pytest_terminal_summary(terminalreporter) -> None:
    if FAULT_REPORT:
        terminalreporter.section("e2e: executions under faults")
        for line in FAULT_REPORT:
            terminalreporter.write_line(line)
