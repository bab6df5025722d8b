"""The execution ledger: every task run leaves a record in Redis (db 2 of the broker's server).

Tasks run at least once (acks_late); the ledger is how an operator, or the end-to-end tests,
count how often each piece of work actually ran and spot duplicates.
"""

import json
import socket
import time
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError
from redis.retry import Retry

LEDGER_DB = 2


def ledger_url(broker_url: str) -> str:
    """The broker URL (same server, credentials and TLS options) pointing at the ledger's db."""
    parts = urlsplit(broker_url)
    return urlunsplit(parts._replace(path=f"/{LEDGER_DB}"))


@cache
def _client() -> redis.Redis:
    # A task whose ledger write fails would be recorded as failed and acknowledged: lost. So the
    # write waits out a Redis restart or failover (about 20 s); meanwhile the worker, having lost
    # its broker connection too, cancels the task and it is redelivered. READONLY: a connection
    # still on the old primary after a failover; retrying reconnects through the moved name.
    return redis.Redis.from_url(
        ledger_url(settings.CELERY_BROKER_URL),
        socket_timeout=3,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=25),
        retry_on_error=[ConnectionError, TimeoutError, ReadOnlyError],
    )


def record(kind: str, key: str, **details: object) -> None:
    """Counts one run of `key` under `kind` (hash ledger:<kind>) and appends its details to the
    list ledger:<kind>:log."""
    entry = {"key": key, "host": socket.gethostname(), "at": time.time(), **details}
    pipe = _client().pipeline(transaction=True)
    pipe.hincrby(f"ledger:{kind}", key, 1)
    pipe.rpush(f"ledger:{kind}:log", json.dumps(entry))
    pipe.execute()


def ping() -> bool:
    return bool(_client().ping())
