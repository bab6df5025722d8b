"""Health checks answered before Django checks the Host header.

The load balancer's health checks carry the instance's private IP as Host, which ALLOWED_HOSTS
(the site's public names) does not list: through CommonMiddleware every check would get 400 and
every web instance would be replaced. /livez is the process alone (what the load balancer asks);
/healthz also asks the database, for operators and deploy checks."""

from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

LIVENESS_PATH = "/livez"
HEALTH_PATH = "/healthz"


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return JsonResponse({"status": "ok"})
        if request.path == HEALTH_PATH:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except Exception as error:  # any failure means "not healthy"; the type is reported
                return JsonResponse({"status": "database-unreachable", "error": type(error).__name__}, status=503)
            return JsonResponse({"status": "ok"})
        return self.get_response(request)
