"""The Celery app (`celery --app bookshelf`): configured from the CELERY_* Django settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookshelf.settings")

app = Celery("bookshelf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
