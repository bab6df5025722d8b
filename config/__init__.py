"""The stack's settings (config/schema.py): every value a stack varies, read once from stack
config and validated. A leaf: it imports the machine contract (userdata/layout.py) and the
release-name rule, nothing of the program, the renderer or Pulumi's runtime."""

from __future__ import annotations

from config.schema import (
    ARM64_FAMILIES,
    SECTIONS,
    AppSettings,
    ConfigError,
    LoadBalancerSettings,
    QueueSettings,
    SettingError,
    Settings,
    WebSettings,
    WorkerSettings,
    ec2_instance_types,
    instance_type_architecture,
    load_settings,
    machine_problems,
)

__all__ = [
    "ARM64_FAMILIES",
    "SECTIONS",
    "AppSettings",
    "ConfigError",
    "LoadBalancerSettings",
    "QueueSettings",
    "SettingError",
    "Settings",
    "WebSettings",
    "WorkerSettings",
    "ec2_instance_types",
    "instance_type_architecture",
    "load_settings",
    "machine_problems",
]
