"""The sample app under its production settings, in-process through Django's test client."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import msgspec
import pytest

from settings import LoadBalancerSettings
from tests import REPO_ROOT

# Django, its production settings and the requests, in a fresh interpreter (settings are global).
REQUESTS = """
import json, sys, django
django.setup()
from django.test import Client
requests = json.loads(sys.argv[1])
print(json.dumps([Client().get(path, HTTP_HOST=host).status_code for path, host in requests]))
"""
# (path, Host header): the load balancer's health check and two other requests sent to the
# instance by its IP, which Host validation must treat as the module's tests say.
SENT = [("/livez", "10.40.8.17:8000"), ("/healthz", "10.40.8.17:8000"), ("/tasks/healthcheck", "10.40.8.17:8000")]

# One xdist worker runs them all (scripts/test.sh: --dist loadgroup): the Django process they share is made once.
pytestmark = pytest.mark.xdist_group("sample-app")


@functools.cache
def statuses() -> dict[tuple[str, str], int]:
    """Each request in SENT answered by one Django process (starting one is most of the cost)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "sample_app"),
        "DJANGO_SETTINGS_MODULE": "proj.settings.production",
        "DJANGO_SECRET_KEY": "test-only-secret-key-of-some-length-0123456789",
        "DJANGO_ALLOWED_HOSTS": "app.example.com",
        "APP_RELEASE": "test",
        # A broker that refuses at once: healthz answers 503, which is still an answer.
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "CELERY_RESULT_EXPIRES": "60",
        "CELERY_TASK_DEFAULT_QUEUE": "default",
        "CELERY_TASK_ROUTES": "{}",
        "CELERY_TASK_SOFT_TIME_LIMIT": "5",
        "CELERY_TASK_TIME_LIMIT": "10",
        "CELERY_VISIBILITY_TIMEOUT": "20",
    }
    result = subprocess.run(
        [sys.executable, "-c", REQUESTS, json.dumps(SENT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(zip(SENT, json.loads(result.stdout.strip().splitlines()[-1]), strict=True))


def get(path: str, host: str) -> int:
    return statuses()[(path, host)]


def test_the_load_balancers_health_check_answers_its_ip_host_header_without_the_broker():
    # The target group's health check: Host is the instance's private IP and port. The broker
    # is down here: liveness still answers 200, so a Redis outage replaces no web instance.
    (path,) = (f.default for f in msgspec.structs.fields(LoadBalancerSettings) if f.name == "health_check_path")
    assert path == "/livez"
    assert get(path, "10.40.8.17:8000") == 200


def test_the_deep_health_check_reports_the_broker_down_and_is_not_refused_for_the_host():
    assert get("/healthz", "10.40.8.17:8000") == 503  # answered (the broker is down), not 400


def test_other_paths_still_refuse_an_unlisted_host():
    assert get("/tasks/healthcheck", "10.40.8.17:8000") == 400
