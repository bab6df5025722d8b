"""WhiteNoise with asset bridging across a rolling deploy (docs/django-settings.md).

During a deploy, instances of the old and the new release answer side by side behind the load
balancer, so a page from one may have its assets fetched from the other. WhiteNoise indexes
STATIC_ROOT (this release's files) once, at start-up, so a process that started before the next
release was installed would answer 404 for that release's hashed names. On such a miss this
middleware looks in STATIC_BRIDGE_ROOT on disk: the machine's app-release keeps there the hashed
files of every installed release. Only misses under STATIC_URL pay for the lookup (one stat).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class BridgingWhiteNoiseMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse] | None = None, settings: Any = django_settings
    ) -> None:
        # Set first: WhiteNoise's constructor already asks immutable_file_test about every file.
        bridge = getattr(settings, "STATIC_BRIDGE_ROOT", None)
        self.bridge_root = os.path.join(os.path.abspath(bridge), "") if bridge else None
        super().__init__(get_response, settings)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.bridge_root and request.path_info not in self.files:
            static_file = self.bridged_file(request.path_info)
            if static_file is not None:
                return self.serve(static_file, request)
        return super().__call__(request)

    def bridged_file(self, url: str) -> Any:
        if not url.startswith(self.static_prefix) or not self.url_is_canonical(url):
            return None
        path = os.path.join(self.bridge_root, url[len(self.static_prefix) :])
        if not self.path_is_child_of(path, self.bridge_root) or self.is_compressed_variant(path):
            return None
        return self.get_static_file(path, url) if os.path.isfile(path) else None

    def immutable_file_test(self, path: str, url: str) -> bool:
        # The bridge holds hashed names only: content-addressed, so cacheable forever.
        in_bridge = self.bridge_root is not None and path.startswith(self.bridge_root)
        return in_bridge or bool(super().immutable_file_test(path, url))
