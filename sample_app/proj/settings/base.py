"""Settings that do not depend on where the project runs."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

INSTALLED_APPS = ["django.contrib.staticfiles", "myapp"]
MIDDLEWARE = [
    # First: the load balancer's health checks carry an IP as Host, which ALLOWED_HOSTS refuses.
    "myapp.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise right after SecurityMiddleware (its docs), with the rolling-deploy bridge.
    "myapp.static_bridge.BridgingWhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "proj.urls"
WSGI_APPLICATION = "proj.wsgi.application"
# No database: the sample project keeps its only state (the execution ledger) in Redis, so the
# release directory stays read-only for the service user.
DATABASES: dict = {}
TEMPLATES: list = []
USE_TZ = True

# Static files: collected when the release is built (hashed, compressed names), served by
# WhiteNoise from the release; STATIC_ROOT comes from DJANGO_STATIC_ROOT (docs/django-settings.md).
STATIC_URL = "/static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
TIME_ZONE = "UTC"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}

# JSON only: pickle would let anyone who can write to the broker run code on the workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ALWAYS_EAGER = False
# acks_late: a task is acknowledged after it ran, so a worker that dies mid-task leaves it to be
# redelivered; every task here is idempotent because of that. A child process killed (OOM,
# kill -9) is rejected back to the queue instead of being recorded as failed.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One reserved task per process, so a long task never holds short ones hostage in its prefetch.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With acks_late a lost connection would otherwise let the task run twice, in parallel.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# ElastiCache failover briefly answers READONLY; retry the channel instead of dying.
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
# The result backend shares the broker's Redis. When that Redis restarts, the worker cancels
# its running acks_late tasks and records them as "retry" in the backend; if that write fails
# (Redis still down), Celery treats the task as revoked and ACKS it: the task is lost. The
# end-to-end suite caught this (tests/e2e/test_faults.py). Retrying backend writes until Redis
# is back keeps the message unacknowledged, so it is redelivered.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 30
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_SEND_TASK_EVENTS = False

# Beat's schedule lives in code (versioned with the release). The heartbeat proves Beat is alive
# and running exactly once: each tick leaves one record in the execution ledger.
BEAT_HEARTBEAT_SECONDS = 5.0
CELERY_BEAT_SCHEDULE = {
    "beat-heartbeat": {"task": "myapp.tasks.beat_heartbeat", "schedule": BEAT_HEARTBEAT_SECONDS},
}
