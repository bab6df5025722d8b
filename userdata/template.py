"""The strict template both the renderer (systemd units) and the ops tool (its remote scripts,
ops/remote/) fill: one class, so both read the same `{{ name }}` and fail the same way."""

from __future__ import annotations

from string import Template


class StrictTemplate(Template):
    """`{{ name }}` placeholders: systemd's own `${VAR}`, `$MAINPID` and `%i` (and the shell's
    `${x#y}`) pass through untouched, and a placeholder without a value raises instead of
    rendering empty."""

    pattern = r"""\{\{(?:\s*(?P<named>[a-z_]+)\s*\}\}|(?P<braced>(?!))|(?P<escaped>(?!))|(?P<invalid>))"""  # type: ignore[assignment]  # Template compiles it
