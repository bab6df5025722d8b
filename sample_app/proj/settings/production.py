"""Production settings: everything that varies comes from the environment the units load
(/etc/app/app.env, /etc/app/worker-<queue>.env, /run/app-secrets/secrets.env; see
docs/machine-layout.md). A missing variable stops the process at start-up with its name."""

import json
import os

from .base import *  # noqa: F403 - the layered settings pattern


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (see docs/machine-layout.md)")
    return value


def _seconds(name: str) -> int:
    raw = _required(name)
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={raw!r} must be a whole number of seconds") from None


DEBUG = False
SECRET_KEY = _required("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = [host for host in _required("DJANGO_ALLOWED_HOSTS").split(",") if host]
APP_RELEASE = _required("APP_RELEASE")
SECURE_CONTENT_TYPE_NOSNIFF = True

# The running release's collected static files (its manifest says which hashed names its pages
# use), pinned when the process starts: `current` may move to the next release before the unit
# restarts, and a page must not name another release's files. Files of every installed release
# stay reachable through the bridge during a rolling deploy (myapp/static_bridge.py).
STATIC_ROOT = os.path.realpath(_required("DJANGO_STATIC_ROOT"))
STATIC_BRIDGE_ROOT = os.environ.get("DJANGO_STATIC_BRIDGE_ROOT") or None

# Behind the stack's load balancer (docs/django-settings.md): it ends TLS and says so in
# X-Forwarded-Proto, and only it reaches gunicorn; the stack sets these only then.
_PROXY_SSL_HEADER = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = tuple(_PROXY_SSL_HEADER.split(",", 1)) if _PROXY_SSL_HEADER else None
CSRF_TRUSTED_ORIGINS = [origin for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin]
# Over HTTPS the browser must never send these cookies in clear.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_PROXY_SSL_HEADER is not None

# The app's own settings, as the stack passes them: a plain value from app.environment (in
# app.env) and a secret from app.secretParameters (fetched at boot into the secrets file).
SAMPLE_GREETING = os.environ.get("SAMPLE_GREETING", "")
SAMPLE_API_KEY = os.environ.get("SAMPLE_API_KEY", "")

CELERY_BROKER_URL = _required("CELERY_BROKER_URL")
# Results only when the stack enables them (app.resultBackend); then they expire.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_RESULT_EXPIRES = _seconds("CELERY_RESULT_EXPIRES")

CELERY_TASK_DEFAULT_QUEUE = _required("CELERY_TASK_DEFAULT_QUEUE")
CELERY_TASK_ROUTES = json.loads(_required("CELERY_TASK_ROUTES"))
# App-wide defaults; each worker's unit passes its own queue's limits on the command line.
CELERY_TASK_SOFT_TIME_LIMIT = _seconds("CELERY_TASK_SOFT_TIME_LIMIT")
CELERY_TASK_TIME_LIMIT = _seconds("CELERY_TASK_TIME_LIMIT")
# Above the largest hard limit of any queue, or acks_late tasks are redelivered while running.
_VISIBILITY_TIMEOUT = _seconds("CELERY_VISIBILITY_TIMEOUT")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _VISIBILITY_TIMEOUT,
    # A message whose worker died (kill -9, connection loss mid-task) is restored by a periodic
    # sweep. kombu's default sweeps only every 10th 10 s tick, i.e. up to 100 s after the
    # timeout; every tick costs one ZRANGE and brings it back within 10 s of the timeout.
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    # Broker failover (docs/failover.md): a primary that stops answering must not hold a
    # producer or a worker's broker connection for good; the name then leads to the new one.
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,  # a silent BRPOP connection is dropped within 21 s
}
# kombu's Redis transport, but a message a worker takes as the primary stops is not lost. It
# replaces whatever transport the URL's scheme names: only for Redis (tests use memory://).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "proj.broker:Transport"
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": _VISIBILITY_TIMEOUT}
CELERY_REDIS_SOCKET_TIMEOUT = 5  # the result backend's connections, likewise (default 120)
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 5
