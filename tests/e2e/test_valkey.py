"""The stack with `redis.engine: valkey` runs Celery on a real Valkey server (Debian's
valkey-server 8.0 from bookworm-backports), TLS only, AUTH on, certificates verified: the same
rendered units, env files and secret fetch as with Redis, against ElastiCache for Valkey's
stand-in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import redis
import test_running_stack as on_redis
from e2e_harness.deployment import Deployment
from e2e_harness.pki import make_ca
from e2e_harness.units import parse_env_file

VALKEY_VERSION = "8.0"  # Debian 12's bookworm-backports valkey-server, one of ElastiCache's


@pytest.fixture(scope="module")
def valkey() -> Iterator[Deployment]:
    """One web and one worker machine (the Beat instance), rendered as a valkey stack and booted
    against valkey-server; its own loopback address, beside the session's Redis stack."""
    deployment = Deployment.create(worker_count=1, engine="valkey", engine_version=VALKEY_VERSION, address_salt=2)
    try:
        deployment.boot()
        yield deployment
    finally:
        deployment.close()


def test_the_broker_is_valkey_with_tls_only_and_auth(valkey: Deployment) -> None:
    info = valkey.redis.client().info("server")
    assert info["server_name"] == "valkey"
    assert str(info["valkey_version"]).startswith(f"{VALKEY_VERSION}.")
    wrong_token = valkey.redis.client()
    wrong_token.connection_pool.connection_kwargs["password"] = "not-the-token"
    with pytest.raises(redis.AuthenticationError):
        wrong_token.ping()
    assert valkey.redis.client().config_get("port") == {"port": "0"}  # no plain-text listener


@pytest.mark.parametrize(
    "check",
    [
        on_redis.test_secret_fetch_wrote_a_verifying_rediss_url_with_the_token,
        on_redis.test_healthz_answers_through_gunicorn_after_pinging_the_broker,
        on_redis.test_healthcheck_enqueued_from_django_runs_and_returns_its_result,
        on_redis.test_healthcheck_enqueued_over_http_is_executed_once,
        on_redis.test_reports_run_only_on_long_queue_workers,
    ],
    ids=lambda check: check.__name__.removeprefix("test_"),
)
def test_the_redis_stacks_round_trips_pass_on_valkey(valkey: Deployment, check: Callable[[Deployment], None]) -> None:
    # The very checks the Redis stack passes (test_running_stack.py), run on the Valkey stack.
    check(valkey)


def test_a_client_that_does_not_trust_valkeys_certificate_is_refused(valkey: Deployment) -> None:
    # The machines' own URL with another CA: verification is on, so the handshake fails.
    other_ca, _ = make_ca(valkey.pki_dir, "untrusted")
    other_ca.chmod(0o644)
    secrets = parse_env_file(valkey.operator.host_path("/run/app-secrets/secrets.env").read_text())
    parts = urlsplit(secrets["CELERY_BROKER_URL"])
    query = parse_qs(parts.query) | {"ssl_ca_certs": [str(other_ca)]}
    url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    result = valkey.django(
        "from myapp.tasks import record_execution; record_execution.delay('valkey-untrusted')",
        extra_env={"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": ""},
    )
    assert result.returncode != 0
    assert re.search("certificate verify failed", result.stderr), result.stderr[-2000:]
    assert valkey.ledger().hget("ledger:started", "valkey-untrusted") is None
