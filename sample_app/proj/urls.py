from django.urls import path
from myapp import views

urlpatterns = [
    path("", views.home),
    path("livez", views.livez),
    path("healthz", views.healthz),
    path("tasks/healthcheck", views.enqueue_healthcheck),
    path("app-settings", views.app_settings),
]
