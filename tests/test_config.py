"""Bad stack config stops the program with one line per problem naming the key, before any
resource exists."""

from __future__ import annotations

import json

import pulumi
import pytest

from offline_render.fake_aws import RecordingMocks
from offline_render.overrides import apply_overrides
from offline_render.program import run_program, stack_file_config
from settings import ConfigError, load_settings
from tests.conftest import prod_config_values


def errors_for(overrides: dict) -> str:
    """Runs the whole program with the prod config plus overrides; returns the error text and
    checks that not a single resource was registered."""
    config = apply_overrides(stack_file_config("prod"), overrides)
    mocks = RecordingMocks("eu-west-1", None)
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", config, mocks)
    assert mocks.resources == []
    message = str(raised.value)
    assert message.startswith("invalid stack config (prod):")
    return message


def test_prod_stack_file_is_valid(prod_settings):
    assert prod_settings.app.release == "2026.11.25-1"
    assert [q.name for q in prod_settings.worker.queues] == ["default", "long"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"worker.desiredCapacity": "two"}, "django-stack:worker.desiredCapacity: got 'two'; expected `int`"),
        ({"web.minSize": -1}, "django-stack:web.minSize: got -1; expected `int` >= 0"),
        (
            {"web.count": 3},
            "django-stack:web.count: replaced by the Auto Scaling group's sizes; "
            "set minSize, desiredCapacity and maxSize",
        ),
        ({"worker.count": 2}, "django-stack:worker.count: replaced by the Auto Scaling group's sizes"),
        ({"web.maxSize": 1}, "django-stack:web.maxSize: 1 is below minSize (2)"),
        (
            {"worker.desiredCapacity": 9},
            "django-stack:worker.desiredCapacity: 9 must be between minSize (1) and maxSize (4)",
        ),
        ({"worker.beat": 2}, "django-stack:worker.beat: got 2; Beat's Auto Scaling group has exactly one instance"),
        (
            {"instances.minHealthyPercentage": 101},
            "django-stack:instances.minHealthyPercentage: got 101; expected `int` <= 100",
        ),
        (
            {"loadBalancer.healthCheckPath": "healthz"},
            "django-stack:loadBalancer.healthCheckPath: 'healthz' must be a URL path starting with /",
        ),
        (
            {
                "loadBalancer": {
                    "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/"
                    "0a1b2c3d-1111-2222-3333-444455556666"
                }
            },
            "django-stack:loadBalancer.certificateArn: a certificate in us-east-1; "
            "an ALB in eu-west-1 needs one from ACM in eu-west-1",
        ),
        (
            {"loadBalancer": {"domain": "app.example.com"}},
            "django-stack:loadBalancer.hostedZoneId: required with domain (app.example.com)",
        ),
        (
            {"loadBalancer": {}},
            "django-stack:loadBalancer.certificateArn: missing: the HTTPS listener needs a certificate",
        ),
        (
            {"loadBalancer.enabled": False},
            "django-stack:loadBalancer.domain: only allowed with enabled true",
        ),
        (
            {"web.ingressCidrs": ["10.40.0.0/16"]},
            "django-stack:web.ingressCidrs: only with loadBalancer.enabled false",
        ),
        (
            {
                "web.targetGroupArns": [
                    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mine/0123456789abcdef"
                ]
            },
            "django-stack:web.targetGroupArns: only with loadBalancer.enabled false",
        ),
        (
            {
                "network.vpcId": "vpc-0123456789abcdef0",
                "network.privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
            },
            "django-stack:network.publicSubnetIds: required with vpcId while loadBalancer.enabled is true",
        ),
        (
            {"network.publicSubnetIds": ["subnet-0123456789abcdef0"]},
            "django-stack:network.publicSubnetIds: only allowed together with vpcId",
        ),
        (
            {"worker.queues": [{"name": "default", "concurrency": 2, "softTimeLimit": 300, "hardTimeLimit": 300}]},
            "django-stack:worker.queues[0].softTimeLimit: 300 must be below hardTimeLimit (300)",
        ),
        (
            {"worker.queues": [{"name": "default", "concurrency": 2, "softTimeLimit": 1, "hardTimeLimit": 2}] * 2},
            "django-stack:worker.queues: 'default' named twice; queue names must be unique",
        ),
        (
            {"worker.queues": [{"name": "long", "concurrency": 2, "softTimeLimit": 1, "hardTimeLimit": 2}]},
            "django-stack:worker.queues: a queue named 'default' is required",
        ),
        (
            {"scheduler": {"count": 1}},
            "django-stack:scheduler: unknown key; "
            "allowed keys here: network, redis, app, instances, web, worker, loadBalancer",
        ),
        (
            {"worker.beta": True},
            "django-stack:worker.beta: unknown key; "
            "allowed keys here: minSize, desiredCapacity, maxSize, instanceType, beat",
        ),
        ({"redis.replicas": 0}, "django-stack:redis.multiAz: true needs replicas >= 1"),
        (
            {"worker.stopMarginSeconds": 3000},
            "django-stack:worker.queues: the largest hardTimeLimit (1800) + 2 x stopMarginSeconds is 7800 s, "
            "above the 7200 s an Auto Scaling lifecycle hook can hold",
        ),
        ({"redis.snapshotRetentionDays": 0}, "django-stack:redis.snapshotRetentionDays: got 0; expected `int` >= 1"),
        (
            {"web.ingressCidrs": ["0.0.0.0/0"], "loadBalancer": {"enabled": False}},
            "django-stack:web.ingressCidrs: 0.0.0.0/0 would open gunicorn to the internet",
        ),
        ({"app.source": "ami"}, "django-stack:instances.amiId: required when app.source is 'ami'"),
        (
            {"worker.visibilityTimeout": 1800},
            "django-stack:worker.visibilityTimeout: 1800 must be above the largest hardTimeLimit (1800)",
        ),
        ({"aws:region": "mars-1"}, "aws:region: got 'mars-1'; expected an AWS region name"),
        ({"app.source": "git"}, "django-stack:app.source: got 'git'; allowed: 's3', 'ami'"),
        (
            {"worker.queues": [{"name": "default", "concurrency": 1, "softTimeLimit": 1}]},
            "django-stack:worker.queues[0].hardTimeLimit: missing; this key is required",
        ),
        ({"network.vpcCidr": "10.0.0.0/99"}, "django-stack:network.vpcCidr: '10.0.0.0/99' is not an IPv4 network"),
    ],
)
def test_bad_config_stops_before_any_resource_with_the_key_named(overrides, expected):
    assert expected in errors_for(overrides)


def test_missing_release_is_named():
    values = prod_config_values()
    app = json.loads(values["app"])
    del app["release"]
    values["app"] = json.dumps(app)
    with pytest.raises(ConfigError, match=r"^django-stack:app\.release: missing; this key is required"):
        load_settings(values, stack="prod", region="eu-west-1")


def test_every_problem_is_reported_at_once():
    message = errors_for({"web.minSize": "x", "redis.nodeType": "t3.small", "worker.maxSize": -2})
    assert len(message.splitlines()) == 4  # the heading and one line per broken section
    assert "django-stack:redis.nodeType: got 't3.small'" in message


def test_missing_region_is_reported():
    with pytest.raises(ConfigError, match="aws:region: missing"):
        load_settings(prod_config_values(), stack="prod", region=None)


def test_visibility_timeout_defaults_above_every_hard_limit(prod_settings):
    worker = prod_settings.worker
    assert worker.broker_visibility_timeout > worker.max_hard_time_limit == 1800
