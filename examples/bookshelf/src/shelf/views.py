from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from shelf.models import Book, Census


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {"books": Book.objects.all(), "census": Census.objects.first(), "release": settings.APP_RELEASE}
    return render(request, "shelf/index.html", context)
