"""AWS's documented limits that both the config checks (config/) and the components check
against: defined once here, a leaf that imports nothing, so each layer may import it."""

from __future__ import annotations

# How long an Auto Scaling lifecycle hook may hold an instance (its heartbeat timeout).
MIN_LIFECYCLE_HOLD_SECONDS = 30
MAX_LIFECYCLE_HOLD_SECONDS = 7200
