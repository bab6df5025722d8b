# Celery's app is loaded with Django, so @shared_task binds to it in web processes too.
from bookshelf.celery import app as celery_app

__all__ = ("celery_app",)
