import hashlib

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from proj.celery import app as celery_app

from myapp import ledger
from myapp.tasks import healthcheck_task

# The load balancer's health check (loadBalancer.healthCheckPath's default): the process alone.
LIVENESS_PATH = "/livez"
# The deep check (the broker over TLS + AUTH) for operators and deploy verification.
HEALTH_PATH = "/healthz"


@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    """200 whenever gunicorn and Django answer. Deliberately no broker ping: the web group
    replaces instances that fail this check, and a broker outage is not cured by new instances."""
    return JsonResponse({"status": "ok", "release": settings.APP_RELEASE})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the broker answers (over the same TLS + AUTH connection Celery uses), else 503."""
    try:
        with celery_app.connection_for_write() as connection:
            # One retry at once: a probe wants its answer now, not after kombu's 2 s back-off.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)
        ledger.ping()
    except Exception as error:  # any failure means "not healthy"; the type is reported
        return JsonResponse({"status": "broker-unreachable", "error": type(error).__name__}, status=503)
    return JsonResponse({"status": "ok", "release": settings.APP_RELEASE})


@csrf_exempt  # an internal probe with no session or cookies to protect
@require_POST
def enqueue_healthcheck(request: HttpRequest) -> JsonResponse:
    result = healthcheck_task.delay()
    return JsonResponse({"task_id": result.id}, status=202)


@require_GET
def app_settings(request: HttpRequest) -> JsonResponse:
    """The app's own settings as the process sees them; the secret only as a digest."""
    key = settings.SAMPLE_API_KEY
    return JsonResponse(
        {
            "greeting": settings.SAMPLE_GREETING,
            "apiKeySha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
        }
    )
