"""gunicorn's entry point (`DJANGO_WSGI_APP=bookshelf.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookshelf.settings")

application = get_wsgi_application()
