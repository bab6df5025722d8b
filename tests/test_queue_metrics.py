"""The backlog publisher's pure parts (userdata/files/app-queue-metrics): which Redis keys hold a
queue, how the broker URL is read and refused, what one PutMetricData call carries. Its run
against a real redis-server and moto is tests/e2e/test_queue_metrics.py."""

from __future__ import annotations

import io
import runpy
from pathlib import Path
from typing import Any

import pytest
from kombu.transport.redis import Channel

from userdata import layout

FILES = Path(__file__).resolve().parents[1] / "userdata" / "files"
SCRIPT: dict[str, Any] = runpy.run_path(str(FILES / "app-queue-metrics"))
URL = "rediss://:tok3n@master.example.cache.amazonaws.com:6379/0?ssl_cert_reqs=required"


def test_priority_steps_and_separator_are_kombus_defaults():
    assert list(SCRIPT["PRIORITY_STEPS"]) == Channel.priority_steps
    assert SCRIPT["PRIORITY_SEP"] == Channel.sep


def test_a_queues_keys_are_the_lists_kombu_puts_each_priority_in():
    channel = Channel.__new__(Channel)  # _q_for_pri reads only class attributes
    expected = [channel._q_for_pri("long", priority) for priority in range(10)]
    assert sorted(set(expected)) == sorted(SCRIPT["priority_keys"]("long"))
    assert SCRIPT["priority_keys"]("long")[0] == "long"


def test_the_broker_url_is_read_from_the_secrets_file_as_app_fetch_secrets_writes_it(tmp_path: Path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"CELERY_BROKER_URL='{URL}'\nDJANGO_SECRET_KEY='not-this'\n")
    assert SCRIPT["broker_url"](str(secrets)) == URL
    secrets.write_text("DJANGO_SECRET_KEY='x'\n")
    with pytest.raises(SCRIPT["BrokerError"], match="CELERY_BROKER_URL is not in"):
        SCRIPT["broker_url"](str(secrets))


def test_the_endpoint_keeps_the_host_token_db_and_verifies_the_certificate_and_host_name(tmp_path: Path):
    host, port, token, db, context = SCRIPT["tls_endpoint"](URL.replace("/0?", "/3?"))
    assert (host, port, token, db) == ("master.example.cache.amazonaws.com", 6379, "tok3n", 3)
    assert context.check_hostname
    assert context.verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize(
    "url",
    [
        "rediss://:tok3n@host:6379/0",  # kombu would connect without verifying
        "rediss://:tok3n@host:6379/0?ssl_cert_reqs=none",
        "redis://:tok3n@host:6379/0?ssl_cert_reqs=required",  # no TLS
        "rediss://host:6379/0?ssl_cert_reqs=required",  # no token
    ],
)
def test_a_url_without_verified_tls_or_a_token_is_refused(url: str):
    with pytest.raises(SCRIPT["BrokerError"]):
        SCRIPT["tls_endpoint"](url)


def test_commands_are_resp_arrays_and_replies_are_read_or_raised():
    assert SCRIPT["encode_command"]("LLEN", "a\x06\x163") == b"*2\r\n$4\r\nLLEN\r\n$4\r\na\x06\x163\r\n"
    replies = io.BytesIO(b"+OK\r\n:42\r\n-WRONGPASS invalid password\r\n")
    assert SCRIPT["read_reply"](replies) == "OK"
    assert SCRIPT["read_reply"](replies) == 42
    with pytest.raises(SCRIPT["BrokerError"], match="WRONGPASS"):
        SCRIPT["read_reply"](replies)
    with pytest.raises(SCRIPT["BrokerError"], match="closed"):
        SCRIPT["read_reply"](io.BytesIO(b":4"))


def test_one_call_carries_a_backlog_per_queue_and_the_heartbeat_with_the_contracts_names():
    env = {
        "STACK": "prod",
        "BACKLOG_METRIC": layout.QUEUE_BACKLOG_METRIC,
        "HEARTBEAT_METRIC": layout.BEAT_HEARTBEAT_METRIC,
        "STACK_DIMENSION": layout.STACK_DIMENSION,
        "QUEUE_DIMENSION": layout.QUEUE_DIMENSION,
    }
    stack = {"Name": "Stack", "Value": "prod"}
    assert SCRIPT["metric_data"](env, {"default": 3, "long": 0}, False) == [
        {
            "MetricName": "QueueBacklog",
            "Dimensions": [stack, {"Name": "Queue", "Value": "default"}],
            "Value": 3.0,
            "Unit": "Count",
        },
        {
            "MetricName": "QueueBacklog",
            "Dimensions": [stack, {"Name": "Queue", "Value": "long"}],
            "Value": 0.0,
            "Unit": "Count",
        },
        {"MetricName": "BeatHeartbeat", "Dimensions": [stack], "Value": 0.0},
    ]
    # The backlog unread (Redis down): the heartbeat still goes out, alone.
    assert [d["MetricName"] for d in SCRIPT["metric_data"](env, {}, True)] == ["BeatHeartbeat"]
