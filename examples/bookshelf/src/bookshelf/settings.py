"""Settings for every environment: what varies comes from the environment the stack's units
load (the names in the stack's docs/machine-layout.md), so the same file runs on the instances,
in the release build (collectstatic, with harmless stand-in values) and in the tests.
A missing variable stops the process at start-up with its name."""

import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
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
CSRF_TRUSTED_ORIGINS = [origin for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if origin]
APP_RELEASE = _required("APP_RELEASE")
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "shelf",
]
MIDDLEWARE = [
    # First: the load balancer's health checks carry an IP as Host, which ALLOWED_HOSTS refuses.
    "bookshelf.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware, as WhiteNoise's docs say: static files skip the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "bookshelf.urls"
WSGI_APPLICATION = "bookshelf.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# DATABASE_URL: from Parameter Store (app.secretParameters), or on a database.mode rds stack the
# stack's own, without a password (passfile=, kept current by the stack). TLS options ride in its
# query string (?sslmode=verify-full&sslrootcert=...); dj-database-url puts them into OPTIONS.
# Django's pool (psycopg_pool) instead of persistent connections. With health checks on, Django
# gives the pool ConnectionPool.check_connection: a connection the server closed is replaced. A
# new connection that fails (a rotated password not yet in the passfile) is retried in the
# background while the request waits up to `timeout` seconds, which stays below gunicorn's
# (web.gunicornTimeout, 30 s by default). docs/database.md explains it.
DATABASES = {"default": dj_database_url.parse(_required("DATABASE_URL"), conn_health_checks=True)}
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 4, "timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# collectstatic writes hashed, compressed copies into DJANGO_STATIC_ROOT at build time (the
# release's static/); the running app serves them from there with far-future cache headers.
STATIC_URL = "static/"
STATIC_ROOT = _required("DJANGO_STATIC_ROOT")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

USE_TZ = True
TIME_ZONE = "UTC"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}

# Celery, from the names the stack writes (app.env and the secrets file).
CELERY_BROKER_URL = _required("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_RESULT_EXPIRES = _seconds("CELERY_RESULT_EXPIRES")
CELERY_TASK_DEFAULT_QUEUE = _required("CELERY_TASK_DEFAULT_QUEUE")
CELERY_TASK_ROUTES = json.loads(_required("CELERY_TASK_ROUTES"))
CELERY_TASK_SOFT_TIME_LIMIT = _seconds("CELERY_TASK_SOFT_TIME_LIMIT")
CELERY_TASK_TIME_LIMIT = _seconds("CELERY_TASK_TIME_LIMIT")
# Above the largest hard limit of any queue, or acks_late tasks are redelivered while running.
# The rest survive an ElastiCache failover (docs/failover.md says what each prevents).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _seconds("CELERY_VISIBILITY_TIMEOUT"),
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
CELERY_BROKER_TRANSPORT = "bookshelf.broker:Transport"
CELERY_REDIS_SOCKET_TIMEOUT = 5
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 5
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
# JSON only: pickle would let anyone who can write to the broker run code on the workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# A task is acknowledged after it ran; every task here is idempotent because of that.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {"shelf-census": {"task": "shelf.tasks.take_census", "schedule": 3600.0}}
