import hashlib
import ipaddress
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.templatetags.static import static
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from proj.celery import app as celery_app

from myapp import ledger
from myapp.tasks import healthcheck_task

# The load balancer's health check (loadBalancer.healthCheckPath's default): the process alone.
LIVENESS_PATH = "/livez"
# The deep check (the broker over TLS + AUTH) for operators and deploy verification.
HEALTH_PATH = "/healthz"


@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """The site's page: its stylesheet under the release's hashed name, and a form that posts back
    to itself, CSRF-checked as a browser's POST is."""
    if request.method == "POST":
        return HttpResponse(format_html("<p>Thank you, {}.</p>", request.POST.get("name", "")))
    return HttpResponse(
        format_html(
            '<!doctype html><html><head><title>Sample app {}</title><link rel="stylesheet" href="{}"></head>'
            '<body><form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<input name="name"><button>Send</button></form></body></html>',
            settings.APP_RELEASE,
            static("sample/site.css"),
            get_token(request),
        )
    )


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


def from_the_instance(request: HttpRequest) -> bool:
    """True for a request the instance sends itself (its probes, the tests): over loopback and
    without X-Forwarded-For. The load balancer connects from its own private address and always
    adds X-Forwarded-For, so nothing arriving through it passes."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return peer.is_loopback and "HTTP_X_FORWARDED_FOR" not in request.META


def instance_only(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Anyone else gets 404, as if the path did not exist: the public listener offers no way to
    enqueue work or read settings."""

    @wraps(view)
    def guarded(request: HttpRequest) -> HttpResponse:
        if not from_the_instance(request):
            raise Http404
        return view(request)

    return guarded


@csrf_exempt  # an internal probe with no session or cookies to protect
@instance_only
@require_POST
def enqueue_healthcheck(request: HttpRequest) -> JsonResponse:
    result = healthcheck_task.delay()
    return JsonResponse({"task_id": result.id}, status=202)


@instance_only
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
