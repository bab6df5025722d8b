"""The CloudWatch agent's config as each machine receives it, checked against what AWS documents
for the agent's JSON (aws/amazon-cloudwatch-agent translator/config/schema.json and its journald
samples: the keys each section allows, types, lengths; the stream-name placeholders; CloudWatch
Logs' naming rules), and against the program: every group the agents write to is one the
program creates, and every unit of the machine has its own stream. Our own checks; the agent's
schema file is not copied."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from offline_render.program import StackRender
from tests.conftest import kind_of
from userdata import layout, render
from userdata.render import UserDataInputs, written_files

# Per section: the keys the agent's schema defines (additionalProperties false there).
AGENT_KEYS = {"metrics_collection_interval", "logfile", "region", "debug", "aws_sdk_log_level", "credentials"}
LOGS_KEYS = {"logs_collected", "log_stream_name", "force_flush_interval", "credentials", "endpoint_override"}
COLLECTED_KEYS = {"files", "journald", "windows_events"}
GROUP_AND_STREAM = {"log_group_name", "log_stream_name", "log_group_class", "retention_in_days"}
FILE_KEYS = GROUP_AND_STREAM | {"file_path", "multi_line_start_pattern", "timestamp_format", "timezone", "encoding"}
JOURNALD_KEYS = GROUP_AND_STREAM | {"units", "priority", "matches", "filters"}
# The placeholders the agent fills in a log_stream_name.
PLACEHOLDERS = {"instance_id", "hostname", "local_hostname", "ip_address"}
# CloudWatch Logs: group names 1-512 of [.-_/#A-Za-z0-9]; stream names 1-512, no ':' or '*'.
GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
STREAM_NAME = re.compile(r"[^:*]{1,512}")


def machine(settings: Any, role: Any = "worker", beat: bool = False) -> UserDataInputs:
    return UserDataInputs(
        settings, kind_of(settings, role, beat), redis_host="master.example.cache.amazonaws.com", redis_port=6379
    )


def problems(config: dict[str, Any]) -> list[str]:
    """What in `config` the agent's schema would refuse or CloudWatch would reject, in words."""
    found = []

    def keys(where: str, value: Any, allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> None:
        if not isinstance(value, dict):
            found.append(f"{where}: not an object")
            return
        found.extend(f"{where}.{key}: not in the agent's schema" for key in sorted(set(value) - allowed))
        found.extend(f"{where}.{key}: required" for key in sorted(required - set(value)))

    def name(where: str, value: Any, pattern: re.Pattern[str]) -> None:
        if not isinstance(value, str):
            found.append(f"{where}: not a string")
            return
        unknown = set(re.findall(r"\{(\w+)\}", value)) - PLACEHOLDERS
        if unknown:
            found.append(f"{where}: placeholders the agent does not fill: {sorted(unknown)}")
        filled = re.sub(r"\{\w+\}", "i-0123456789abcdef0", value)
        if not pattern.fullmatch(filled):
            found.append(f"{where}: {value!r} breaks CloudWatch Logs' naming rules")

    def collect_list(where: str, section: Any, allowed: set[str], required: set[str]) -> None:
        keys(where, section, {"collect_list"}, {"collect_list"})
        entries = section.get("collect_list") if isinstance(section, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= 16384:
            found.append(f"{where}.collect_list: 1 to 16384 entries")
            return
        if len({json.dumps(e, sort_keys=True) for e in entries}) != len(entries):
            found.append(f"{where}.collect_list: entries must be unique")
        for index, entry in enumerate(entries):
            at = f"{where}.collect_list[{index}]"
            keys(at, entry, allowed, required)
            name(f"{at}.log_group_name", entry.get("log_group_name"), GROUP_NAME)
            name(f"{at}.log_stream_name", entry.get("log_stream_name"), STREAM_NAME)

    keys("(top)", config, {"agent", "metrics", "logs", "traces"})
    keys("agent", config.get("agent", {}), AGENT_KEYS)
    region = config.get("agent", {}).get("region")
    if region is not None and not (isinstance(region, str) and 1 <= len(region) <= 64):
        found.append("agent.region: a string of 1 to 64 characters")
    logs = config.get("logs", {})
    keys("logs", logs, LOGS_KEYS, {"logs_collected"})
    collected = logs.get("logs_collected", {})
    keys("logs.logs_collected", collected, COLLECTED_KEYS)
    if "files" in collected:
        collect_list("logs.logs_collected.files", collected["files"], FILE_KEYS, {"file_path"})
        for entry in collected["files"].get("collect_list", []):
            if not (isinstance(entry.get("file_path"), str) and 0 < len(entry["file_path"]) <= 4096):
                found.append(f"files: file_path {entry.get('file_path')!r}: a path of at most 4096 characters")
    if "journald" in collected:
        collect_list("logs.logs_collected.journald", collected["journald"], JOURNALD_KEYS, {"units"})
        for entry in collected["journald"].get("collect_list", []):
            units = entry.get("units")
            if not (isinstance(units, list) and units and all(isinstance(u, str) and u for u in units)):
                found.append(f"journald: units {units!r}: a list of unit names")
    return found


def test_the_checks_catch_what_the_agent_or_cloudwatch_would_refuse() -> None:
    bad = {
        "agent": {"region": "", "verbose": True},
        "logs": {
            "logs_collected": {
                "journald": {
                    "collect_list": [{"log_group_name": "/a b", "log_stream_name": "{instance}/x", "units": "x"}]
                },
                "syslog": {},
            }
        },
    }
    assert problems(bad) == [
        "agent.verbose: not in the agent's schema",
        "agent.region: a string of 1 to 64 characters",
        "logs.logs_collected.syslog: not in the agent's schema",
        "logs.logs_collected.journald.collect_list[0].log_group_name: '/a b' breaks CloudWatch Logs' naming rules",
        "logs.logs_collected.journald.collect_list[0].log_stream_name: placeholders the agent does not fill: "
        "['instance']",
        "journald: units 'x': a list of unit names",
    ]


@pytest.mark.parametrize(("role", "beat"), [("web", False), ("worker", False), ("worker", True)])
def test_each_machines_agent_config_is_what_the_agents_schema_allows(prod_settings: Any, role: str, beat: bool) -> None:
    config = render.cloudwatch_agent_config(machine(prod_settings, role, beat))
    assert problems(config) == []


@pytest.mark.parametrize(("role", "beat"), [("web", False), ("worker", False), ("worker", True)])
def test_every_unit_and_log_file_gets_its_own_stream_in_the_roles_group(
    prod_settings: Any, role: str, beat: bool
) -> None:
    inputs = machine(prod_settings, role, beat)
    collected = render.cloudwatch_agent_config(inputs)["logs"]["logs_collected"]
    journald, files = collected["journald"]["collect_list"], collected["files"]["collect_list"]
    # A timer's lines are its service's: the Beat instance ships app-queue-metrics.service.
    services = [
        layout.QUEUE_METRICS_UNIT if u == layout.QUEUE_METRICS_TIMER else u for u in render.units_to_enable(inputs)
    ]
    assert [entry["units"] for entry in journald] == [[unit] for unit in [*services, layout.SSM_AGENT_UNIT]]
    assert not any(unit.endswith(".timer") for entry in journald for unit in entry["units"])
    assert ([layout.QUEUE_METRICS_UNIT] in [entry["units"] for entry in journald]) == beat
    assert [entry["file_path"] for entry in files] == list(layout.SHIPPED_LOG_FILES)
    streams = [entry["log_stream_name"] for entry in journald + files]
    assert len(set(streams)) == len(streams) and all(s.startswith("{instance_id}/") for s in streams)
    app_unit = {"web": "gunicorn.service", "worker": "celery-worker-default.service"}[role]
    assert "{instance_id}/" + app_unit in streams
    assert ("{instance_id}/celery-beat.service" in streams) == beat
    assert {entry["log_group_name"] for entry in journald + files} == {f"/django-stack/prod/{role}"}


def test_the_agents_write_only_to_groups_the_program_creates(prod: StackRender) -> None:
    created = {r.inputs.get("name") for r in prod.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for instance in prod.instances:
        (config,) = [f for f in written_files(instance.user_data) if f.path == layout.CLOUDWATCH_AGENT_CONFIG]
        collected = json.loads(config.content)["logs"]["logs_collected"]
        targets = {e["log_group_name"] for section in collected.values() for e in section["collect_list"]}
        assert targets == {f"/django-stack/prod/{instance.role}"} and targets <= created, instance.logical_name
