"""The stack's settings: every value a stack varies, read once from stack config and validated.
A leaf: it imports the machine contract (userdata/layout.py) and the release-name rule, nothing
of the program, the renderer or Pulumi's runtime.

- schema.py: each section's keys, types, defaults and own rules (`Settings`, `SECTIONS`);
- rules.py: the rules that join sections, the project's name, the instance types;
- messages.py: msgspec's errors rewritten as one line naming the key;
- load.py: `load_settings`, config values in, `Settings` out (or one `ConfigError`).
- kinds.py: the machine kinds (`MachineKind`, `machine_kinds(settings)`), one per group.

Whether each machine kind's user-data can be rendered and fits EC2's limit is not a config
rule: program.py's `build` checks it, before the first resource.
"""

from __future__ import annotations

from config.load import load_settings
from config.rules import ARM64_FAMILIES, ec2_instance_types, instance_type_architecture
from config.schema import (
    SECTIONS,
    AppSettings,
    ConfigError,
    LoadBalancerSettings,
    QueueSettings,
    Settings,
    WebSettings,
    WorkerSettings,
)

__all__ = [
    "ARM64_FAMILIES",
    "SECTIONS",
    "AppSettings",
    "ConfigError",
    "LoadBalancerSettings",
    "QueueSettings",
    "Settings",
    "WebSettings",
    "WorkerSettings",
    "ec2_instance_types",
    "instance_type_architecture",
    "load_settings",
]
