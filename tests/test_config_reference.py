"""docs/configuration.md is the config schema's reference (scripts/config_reference.py), and the
operator's docs say what every alarm means."""

from __future__ import annotations

import re

import msgspec
import pytest

from scripts import config_reference
from tests import REPO_ROOT


def test_the_config_reference_is_what_the_schema_generates():
    written = config_reference.DOC.read_text()
    assert config_reference.render(written) == written, "run: .venv/bin/python -m scripts.config_reference"


def rows_of(table: str) -> list[str]:
    body = config_reference.DOC.read_text().split(f"<!-- schema: {table} -->\n", 1)[1].split("<!-- end schema -->")[0]
    return re.findall(r"^\| `([A-Za-z][A-Za-z0-9]*)` \|", body, flags=re.M)


@pytest.mark.parametrize("section", list(config_reference.SECTIONS))
def test_every_key_a_section_accepts_has_one_row_and_no_other_key_has(section):
    model = config_reference.SECTIONS[section]
    assert rows_of(section) == [field.encode_name for field in msgspec.structs.fields(model)]


def test_a_description_changed_in_the_schema_makes_the_reference_out_of_date(monkeypatch):
    tables = config_reference.tables()
    tables["redis"]["properties"]["nodeType"]["description"] = "something else"
    monkeypatch.setattr(config_reference, "tables", lambda: tables)
    written = config_reference.DOC.read_text()
    assert "| `nodeType` | something else |" in config_reference.render(written)


def test_a_key_the_schema_lacks_is_refused(monkeypatch):
    written = config_reference.DOC.read_text() + "\n<!-- schema: nosuch -->\n<!-- end schema -->\n"
    with pytest.raises(ValueError, match="no config section or object named nosuch"):
        config_reference.render(written)


def test_the_notes_written_by_hand_are_kept():
    assert "replicas >= 1 enables automatic failover" in config_reference.render(config_reference.DOC.read_text())


def test_every_alarm_says_in_the_docs_what_it_means_and_what_to_do(prod):
    monitoring = (REPO_ROOT / "docs/monitoring.md").read_text()
    descriptions = {r.inputs["alarmDescription"] for r in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert len(descriptions) >= 10
    assert {description for description in descriptions if description not in monitoring} == set()
