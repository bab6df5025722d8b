"""WSGI entry point for gunicorn (`DJANGO_WSGI_APP=proj.wsgi:application`)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings.production")

application = get_wsgi_application()
