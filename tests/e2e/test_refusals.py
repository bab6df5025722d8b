"""A client with a wrong secret, no TLS, or facing a certificate it does not trust must fail
loudly and run nothing. The good workers stay up throughout, so anything that did reach the
real broker would be executed and show in the ledger."""
from __future__ import annotations

import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from e2e_harness.deployment import Deployment, wait_until
from e2e_harness.redis_server import PORT, RedisServer

SETTLE_SECONDS = 3.0  # long enough for a good worker to run anything that had been queued


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f":{password}@{parts.hostname}:{parts.port}"))


def bad_urls(running: Deployment, rogue: RedisServer) -> dict[str, tuple[str, str]]:
    """kind -> (broker URL, a regular expression the error must match)."""
    good = running.redis.url(0)
    return {
        "wrong-password": (with_password(good, "not-the-token"), "invalid username-password pair"),
        "plain-redis": (f"redis://:{running.redis.password}@{running.redis.host}:{PORT}/0", "Connection reset by peer|Connection closed by server"),
        "untrusted-cert": (rogue.url(0).replace(str(rogue.cert.ca_file), str(running.redis.cert.ca_file)),
                           "certificate verify failed"),
    }


@pytest.mark.parametrize("kind", ["wrong-password", "plain-redis", "untrusted-cert"])
def test_publishing_with_a_bad_broker_url_fails_clearly_and_nothing_runs(running: Deployment, rogue: RedisServer,
                                                                         kind: str) -> None:
    url, message = bad_urls(running, rogue)[kind]
    key = f"refused-{kind}"
    result = running.django(f"from myapp.tasks import record_execution; record_execution.delay({key!r})",
                            extra_env={"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": ""})
    assert result.returncode != 0
    assert re.search(message, result.stderr), result.stderr[-2000:]
    time.sleep(SETTLE_SECONDS)
    assert running.ledger().hget("ledger:started", key) is None
    assert rogue.client().llen("default") == 0  # the untrusted server never received it


@pytest.mark.parametrize("kind", ["wrong-password", "plain-redis", "untrusted-cert"])
def test_worker_with_a_bad_broker_url_logs_why_and_consumes_nothing(running: Deployment, rogue: RedisServer,
                                                                    kind: str) -> None:
    url, message = bad_urls(running, rogue)[kind]
    if kind == "untrusted-cert":
        # Bait on the untrusted server: a worker that skipped verification would run it.
        trusting = rogue.url(0)
        bait = running.django("from myapp.tasks import record_execution; record_execution.delay('bait')",
                              extra_env={"CELERY_BROKER_URL": trusting, "CELERY_RESULT_BACKEND": ""})
        assert bait.returncode == 0, bait.stderr
        assert rogue.client().llen("default") == 1
    machine = running.by_role("worker")[0]
    name = f"refused-{kind}"
    machine.start("celery-worker-default.service", {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": ""}, as_name=name)
    try:
        wait_until(lambda: re.search(message, machine.log(name)), timeout=30)
        time.sleep(SETTLE_SECONDS)
        assert " ready." not in machine.log(name)
        if kind == "untrusted-cert":
            assert rogue.client().llen("default") == 1
            assert rogue.client(2).hget("ledger:started", "bait") is None
    finally:
        machine.kill(name)
