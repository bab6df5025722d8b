"""The README's config reference names every key config/ accepts, and no other."""

from __future__ import annotations

import re

import msgspec

from config import SECTIONS, QueueSettings
from tests import REPO_ROOT


def documented_keys(section: str) -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    body = readme.split(f"### `{section}`\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z][A-Za-z0-9]*)` \|", body, flags=re.M))


def model_keys(model: type[msgspec.Struct]) -> set[str]:
    return {field.encode_name for field in msgspec.structs.fields(model)}


def test_every_config_key_is_documented():
    for section, model in SECTIONS.items():
        assert documented_keys(section) == model_keys(model), section


def test_queue_object_keys_are_documented():
    readme = (REPO_ROOT / "README.md").read_text()
    for key in model_keys(QueueSettings):
        assert f"`{key}`" in readme.split("A queue object:", 1)[1].split("\n\n", 1)[0]


def test_every_alarm_says_in_the_readme_what_it_means_and_what_to_do(prod):
    readme = (REPO_ROOT / "README.md").read_text()
    descriptions = {r.inputs["alarmDescription"] for r in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(descriptions) >= 10
    assert {description for description in descriptions if description not in readme} == set()
