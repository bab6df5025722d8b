"""What `manage.py collectstatic` needs when the release is built (scripts/build-release.sh),
where no instance environment exists: the static file settings, and none of the secrets."""

import os

from .base import *  # noqa: F403 - the layered settings pattern

STATIC_ROOT = os.environ["DJANGO_STATIC_ROOT"]
