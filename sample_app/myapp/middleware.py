"""The health check paths answered before Django checks the Host header.

The load balancer's health checks send the instance's private IP as Host, which ALLOWED_HOSTS
(the site's public names) does not list: through CommonMiddleware they would all get 400 and
every web instance would be marked unhealthy and replaced."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from myapp import views


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == views.LIVENESS_PATH:
            return views.livez(request)
        if request.path == views.HEALTH_PATH:
            return views.healthz(request)
        return self.get_response(request)
