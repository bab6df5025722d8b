"""Bad stack config stops the program with one line per problem naming the key, before any
resource exists."""

from __future__ import annotations

import hashlib
import json
import re

import pulumi
import pytest

from config import ARM64_FAMILIES, ConfigError, ec2_instance_types, instance_type_architecture, load_settings
from offline_render.fake_aws import RecordingMocks
from offline_render.overrides import apply_overrides
from offline_render.program import run_program, stack_file_config
from tests.conftest import prod_config_values


def errors_for(overrides: dict, preview: bool = False) -> str:
    """Runs the whole program with the prod config plus overrides (as `pulumi preview` or
    `pulumi up`); returns the error text and checks that not a single resource was registered."""
    config = apply_overrides(stack_file_config("prod"), overrides)
    mocks = RecordingMocks("eu-west-1", None)
    with pytest.raises(pulumi.RunError) as raised:
        run_program("prod", config, mocks, preview=preview)
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
            "django-stack:web.count: unknown key; allowed keys here: minSize, desiredCapacity, maxSize",
        ),
        ({"web.maxSize": 1}, "django-stack:web.maxSize: 1 is below minSize (2)"),
        (
            {"worker.desiredCapacity": 9},
            "django-stack:worker.desiredCapacity: 9 must be between minSize (1) and maxSize (4)",
        ),
        ({"worker.beat": 2}, "django-stack:worker.beat: got 2; expected `bool`"),
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
                "network": {
                    "vpcId": "vpc-0123456789abcdef0",
                    "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                }
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
            {"worker.stopMarginSeconds": 39},
            "django-stack:worker.stopMarginSeconds: got 39; expected `int` >= 40",
        ),
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
        (
            {"instances.ssmAgentVersion": "latest"},
            "django-stack:instances.ssmAgentVersion: got 'latest'; use an agent release AWS publishes",
        ),
        (
            {"logs.agentVersion": "1.300040.0b650/../x"},
            "django-stack:logs.agentVersion: got '1.300040.0b650/../x'; use an agent release AWS publishes",
        ),
    ],
)
def test_bad_config_stops_before_any_resource_with_the_key_named(overrides, expected):
    assert expected in errors_for(overrides)


@pytest.mark.parametrize(
    "release", ["r1@sha256:abc", f"r1@sha256:{'A' * 64}", f"r1@sha512:{'a' * 64}", f"r1@sha256:{'a' * 64}\n"]
)
def test_a_release_pinned_to_anything_but_a_sha256_is_refused_naming_app_release(release):
    lines = errors_for({"app.release": release}).splitlines()
    assert lines[1:] == [
        f"django-stack:app.release: got {release!r}; use a release name (up to 64 letters, digits, '.', '_' or '-', "
        'starting with a letter or digit, e.g. "2026.11.25-1"), optionally pinned: @sha256:<the artifact\'s 64 hex '
        "digits> as build-release prints it"
    ]


def test_a_release_pinned_to_its_artifact_is_taken_whole():
    values = prod_config_values()
    pinned = f"2026.11.25-1@sha256:{'0a' * 32}"
    values["app"] = json.dumps(json.loads(values["app"]) | {"release": pinned})
    assert load_settings(values, stack="prod", region="eu-west-1").app.release == pinned


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


# Values that used to pass the config checks and fail only while rendering user-data, after ~48
# resources were registered, and never in a preview of a new stack (no Redis endpoint yet).
# Hashes do not compress: enough of them push the worker's user-data past EC2's 16 KiB (500: about
# 19 KiB packed; each more is more of zopfli's time, which runs on a document zlib cannot fit).
MANY_ROUTES = [f"app.t{hashlib.sha256(str(i).encode()).hexdigest()[:24]}" for i in range(500)]
LATE_FAILURES = [
    (
        {"app.allowedHosts": ["example.com", "it's.example.com"]},
        'django-stack:app.allowedHosts[1]: got "it\'s.example.com"',
    ),
    ({"app.allowedHosts": ["a\nb"]}, "django-stack:app.allowedHosts[0]: got 'a\\nb'; use a host name"),
    (
        {"redis.caCertFile": "/etc/ssl/it's.pem"},
        'django-stack:redis.caCertFile: got "/etc/ssl/it\'s.pem"; use an absolute path',
    ),
    (
        {
            "worker.queues": [
                {"name": "default", "concurrency": 1, "softTimeLimit": 1, "hardTimeLimit": 2, "routes": MANY_ROUTES}
            ]
        },
        "django-stack: the worker instances' user-data cannot be rendered: worker user-data is",
    ),
]


@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
@pytest.mark.parametrize(("overrides", "expected"), LATE_FAILURES)
def test_what_the_renderer_refuses_stops_before_any_resource(overrides, expected, preview):
    assert expected in errors_for(overrides, preview=preview)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("app.release", "r1"),
        ("app.module", "proj"),
        ("app.artifactPrefix", "releases/"),
        ("redis.nodeType", "cache.t4g.small"),
        ("redis.engineVersion", "7.1"),
        ("redis.snapshotWindow", "03:00-04:00"),
        ("web.instanceType", "t3.small"),
        ("worker.instanceType", "t3.medium"),
        ("loadBalancer.domain", "app.example.com"),
        ("loadBalancer.hostedZoneId", "Z0123456789ABCDEFGHIJ"),
        ("loadBalancer.accessLogsBucket", "my-alb-logs"),
        ("loadBalancer.accessLogsPrefix", "alb/prod"),
    ],
)
def test_a_trailing_newline_is_refused(key, value):
    assert f"django-stack:{key}: got {value + chr(10)!r}; use " in errors_for({key: value + "\n"})


def test_a_trailing_newline_in_a_queue_name_or_region_is_refused():
    queue = {"name": "default\n", "concurrency": 1, "softTimeLimit": 1, "hardTimeLimit": 2}
    assert "django-stack:worker.queues[0].name: got 'default\\n'; use up to 32 lowercase" in errors_for(
        {"worker.queues": [queue]}
    )
    assert "aws:region: got 'eu-west-1\\n'" in errors_for({"aws:region": "eu-west-1\n"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"redis.snapshotWindow": "05:30-06:30"},
            "django-stack:redis.snapshotWindow: 05:30-06:30 overlaps maintenanceWindow sun:05:00-sun:06:00",
        ),
        (  # across midnight into Sunday's maintenance
            {"redis.snapshotWindow": "23:30-00:30", "redis.maintenanceWindow": "sun:00:00-sun:01:00"},
            "django-stack:redis.snapshotWindow: 23:30-00:30 overlaps maintenanceWindow",
        ),
        (  # a maintenance window across the end of the week
            {"redis.snapshotWindow": "00:30-01:30", "redis.maintenanceWindow": "sun:23:00-mon:01:00"},
            "django-stack:redis.snapshotWindow: 00:30-01:30 overlaps maintenanceWindow",
        ),
        (
            {"redis.snapshotWindow": "03:00-03:59"},
            "django-stack:redis.snapshotWindow: 03:00-03:59 is 59 minutes; ElastiCache needs at least 60",
        ),
        (
            {"redis.maintenanceWindow": "sun:05:00-sun:05:30"},
            "django-stack:redis.maintenanceWindow: sun:05:00-sun:05:30 is 30 minutes; ElastiCache needs at least 60",
        ),
        ({"network.vpcCidr": "10.0.0.0/12"}, "django-stack:network.vpcCidr: 10.0.0.0/12 is larger than AWS allows"),
        ({"network.vpcCidr": "10.0.0.0/24"}, "django-stack:network.vpcCidr: 10.0.0.0/24 is too small for one /24"),
        (
            {"web.ingressCidrs": ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"]},
            "django-stack:web.ingressCidrs: 0.0.0.0/1, 128.0.0.0/2, 192.0.0.0/2 would open gunicorn to the internet",
        ),
        (
            {"web.ingressCidrs": ["10.0.0.0/16", "10.1.0.0/16", "10.0.0.0/16"]},
            "django-stack:web.ingressCidrs: 10.0.0.0/16 listed twice",
        ),
        ({"app.artifactBucket": "a..b"}, "django-stack:app.artifactBucket: got 'a..b'; two adjacent periods"),
        (
            {"app.artifactBucket": "10.1.2.3"},
            "django-stack:app.artifactBucket: got '10.1.2.3'; a bucket name must not look like an IP",
        ),
        ({"app.artifactBucket": "xn--bucket"}, "django-stack:app.artifactBucket: got 'xn--bucket'; S3 reserves"),
        (
            {"app.artifactBucket": "my-bucket-s3alias"},
            "django-stack:app.artifactBucket: got 'my-bucket-s3alias'; S3 reserves",
        ),
        ({"app.artifactBucket": "My_Bucket"}, "django-stack:app.artifactBucket: got 'My_Bucket'; 3 to 63 lowercase"),
        ({"app.artifactBucket": "ab"}, "django-stack:app.artifactBucket: got 'ab'; 3 to 63 lowercase"),
    ],
)
def test_aws_limits_are_checked_before_any_resource(overrides, expected):
    assert expected in errors_for(overrides)


def test_windows_apart_and_an_ingress_set_short_of_the_world_pass():
    values = prod_config_values()
    redis = json.loads(values["redis"]) | {"snapshotWindow": "23:00-00:00", "maintenanceWindow": "sun:00:00-sun:01:00"}
    web = json.loads(values["web"]) | {"ingressCidrs": ["0.0.0.0/1", "128.0.0.0/2"]}
    own_balancer = json.dumps({"enabled": False})  # web ingress is the user's only without the stack's ALB
    settings = load_settings(
        values | {"redis": json.dumps(redis), "web": json.dumps(web), "loadBalancer": own_balancer},
        stack="prod",
        region="eu-west-1",
    )
    assert settings.redis.snapshot_window == "23:00-00:00"
    assert settings.web.ingress_cidrs == ("0.0.0.0/1", "128.0.0.0/2")


@pytest.mark.parametrize(("engine", "version"), [("redis", "7.1"), ("valkey", "8.1")])
def test_an_engine_without_a_version_gets_its_default(engine, version):
    values = prod_config_values()
    redis = {k: v for k, v in json.loads(values["redis"]).items() if k != "engineVersion"} | {"engine": engine}
    settings = load_settings(values | {"redis": json.dumps(redis)}, stack="prod", region="eu-west-1")
    assert (settings.redis.engine, settings.redis.version) == (engine, version)


# --- messages a person can act on --------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"redis.engineVersion": "6.2"},
            "django-stack:redis.engineVersion: got '6.2'; engine redis needs 7.x, e.g. \"7.1\"",
        ),
        (
            {"redis.engine": "valkey", "redis.engineVersion": "7.1"},
            "django-stack:redis.engineVersion: got '7.1'; engine valkey needs 7.2 or 8.x, e.g. \"8.1\"",
        ),
        (
            {"redis.engine": "valkey", "redis.engineVersion": "9"},
            "django-stack:redis.engineVersion: got '9'; use major.minor, e.g. \"7.1\"",
        ),
        ({"redis.engine": "memcached"}, "django-stack:redis.engine: got 'memcached'; allowed: 'redis', 'valkey'"),
        (
            {"redis.engineVersion": 7.1},
            "django-stack:redis.engineVersion: got 7.1; a number where text is expected; "
            'quote it in the stack file: "7.1"',
        ),
        (
            {"app.artifactBucket": "s3://my-artifacts/releases/"},
            "django-stack:app.artifactBucket: got 's3://my-artifacts/releases/'; the bucket name only, without s3://",
        ),
        (
            {"django-stack:web.count": "3"},
            "django-stack:web.count: set as a flat key named 'web.count'; set it inside its section with "
            "`pulumi config set --path web.count VALUE`",
        ),
        (
            {"redis.nodeType": "t3.small"},
            "django-stack:redis.nodeType: got 't3.small'; use a cache node type, e.g. \"cache.t4g.small\"",
        ),
    ],
)
def test_messages_say_what_to_do(overrides, expected):
    message = errors_for(overrides)
    assert expected in message
    assert "regex" not in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"app.environment": {"database_url": "x"}},
            "django-stack:app.environment.database_url: not an environment variable name; use up to 64 capitals",
        ),
        (
            {"app.environment": {"GREETING": "it's"}},
            'django-stack:app.environment.GREETING: got "it\'s"; use up to 4096 characters without single quotes',
        ),
        (
            {"app.environment": {"FEATURE": True}},
            'django-stack:app.environment.FEATURE: got True, not text; quote it in the stack file: "True"',
        ),
        (
            {"app.environment": {"CELERY_APP": "other"}},
            "django-stack:app.environment.CELERY_APP: the stack sets this variable itself; choose another name",
        ),
        (
            {"app.secretParameters": {"DJANGO_SECRET_KEY": "/myapp/prod/key"}},
            "django-stack:app.secretParameters.DJANGO_SECRET_KEY: the stack sets this variable itself",
        ),
        (
            {"app.secretParameters": {"EMAIL_API_KEY": "myapp/prod/key"}},
            "django-stack:app.secretParameters.EMAIL_API_KEY: got 'myapp/prod/key'; use a Parameter Store path",
        ),
        (
            {"app.secretParameters": {"EMAIL_API_KEY": "/aws/reserved"}},
            "django-stack:app.secretParameters.EMAIL_API_KEY: got '/aws/reserved'; use a Parameter Store path",
        ),
        (
            {"app.environment": {"EMAIL_HOST": "x"}, "app.secretParameters": {"EMAIL_HOST": "/myapp/k"}},
            "django-stack:app.secretParameters: EMAIL_HOST also set in environment; set each name once",
        ),
    ],
)
def test_the_apps_own_settings_are_checked_by_name(overrides, expected):
    assert expected in errors_for(overrides)


POINTER = "store it in Parameter Store (SecureString) and name it in app.secretParameters"


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("DATABASE_PASSWORD", "hunter2", "the name contains PASSWORD"),
        ("SMTP_PASSWD", "hunter2", "the name contains PASSWD"),
        ("STRIPE_SECRET", "sk_live_x", "the name contains SECRET"),
        ("GITHUB_TOKEN_FILE", "x", "the name contains TOKEN"),
        ("EMAIL_API_KEY", "abc", "the name ends in _KEY"),
        (
            "DATABASE_URL",
            "postgres://app:hunter2@db.internal/app",
            "the value is a URL with a password (user:password@)",
        ),
        ("CACHE_URL", "rediss://:hunter2@cache.internal:6379/0", "the value is a URL with a password (user:password@)"),
    ],
)
def test_credential_like_environment_is_refused_pointing_to_secret_parameters(name, value, why):
    message = settings_error({"app": {**json.loads(prod_config_values()["app"]), "environment": {name: value}}})
    assert message == f"django-stack:app.environment.{name}: {why}: app.environment lands in plain user-data, " + (
        f"readable by anyone who may describe the instances; {POINTER}"
    )
    assert value not in message  # the credential itself is never echoed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgres://app@db.internal/app"),  # no password: IAM or .pgpass
        ("SENTRY_DSN_HOST", "https://o1.ingest.sentry.io/1"),
        ("KEY_PREFIX", "myapp"),  # _KEY only at the end
        ("DOCS_URL", "https://example.com/a:b@c"),  # `@` in the path, not in userinfo
    ],
)
def test_plain_environment_values_pass(name, value):
    app = {**json.loads(prod_config_values()["app"]), "environment": {name: value}}
    settings = load_settings({**prod_config_values(), "app": json.dumps(app)}, stack="prod", region="eu-west-1")
    assert settings.app.environment == {name: value}


def test_credential_like_environment_stops_before_any_resource():
    assert "django-stack:app.environment.DATABASE_PASSWORD: the name contains PASSWORD" in errors_for(
        {"app.environment": {"DATABASE_PASSWORD": "hunter2"}}
    )


def settings_error(overrides: dict[str, object]) -> str:
    """load_settings alone (pure, no program run) on the prod config with sections replaced."""
    values = prod_config_values()
    for section, body in overrides.items():
        values[section] = json.dumps(body)
    with pytest.raises(ConfigError) as raised:
        load_settings(values, stack="prod", region="eu-west-1")
    return str(raised.value)


def prod_worker(**changes: object) -> dict[str, object]:
    return {**json.loads(prod_config_values()["worker"]), **changes}


def queue(name: str) -> dict[str, object]:
    return {"name": name, "concurrency": 1, "softTimeLimit": 1, "hardTimeLimit": 2}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"alerts": {"emails": ["not-an-email"]}},
            "django-stack:alerts.emails[0]: got 'not-an-email'; use an email address, e.g. \"ops@example.com\"",
        ),
        ({"alerts": {"emails": ["ops@example.com\n"]}}, "django-stack:alerts.emails[0]: got 'ops@example.com\\n'"),
        (
            {"alerts": {"emails": ["ops@example.com", "OPS@example.com"]}},
            "django-stack:alerts.emails: ops@example.com listed twice; list each address once",
        ),
        (
            {"alerts": {"emails": "ops@example.com"}},
            "django-stack:alerts.emails: got 'ops@example.com'; expected `array`",
        ),
        (
            {"alerts": {"brokerMemoryPercent": 101}},
            "django-stack:alerts.brokerMemoryPercent: got 101; expected `int` <= 100",
        ),
        ({"alerts": {"brokerCpuPercent": 0}}, "django-stack:alerts.brokerCpuPercent: got 0; expected `int` >= 1"),
        (
            {"alerts": {"brokerConnections": 70000}},
            "django-stack:alerts.brokerConnections: got 70000; expected `int` <= 65000",
        ),
        (
            {"alerts": {"replicationLagSeconds": 0}},
            "django-stack:alerts.replicationLagSeconds: got 0; expected `int` >= 1",
        ),
        ({"alerts": {"webErrorPercent": 0}}, "django-stack:alerts.webErrorPercent: got 0; expected `float` > 0.0"),
        ({"alerts": {"webP99Seconds": -1}}, "django-stack:alerts.webP99Seconds: got -1; expected `float` > 0.0"),
        ({"alerts": {"backlogThreshold": 0}}, "django-stack:alerts.backlogThreshold: got 0; expected `int` >= 1"),
        ({"alerts": {"backlogMinutes": 1441}}, "django-stack:alerts.backlogMinutes: got 1441; expected `int` <= 1440"),
        (
            {"alerts": {"email": ["ops@example.com"]}},
            "django-stack:alerts.email: unknown key; allowed keys here: emails,",
        ),
        (
            {"worker": prod_worker(scaling={"targetBacklogPerInstance": 0})},
            "django-stack:worker.scaling.targetBacklogPerInstance: got 0; expected `float` > 0.0",
        ),
        (
            {"worker": prod_worker(scaling={"target": 5})},
            "django-stack:worker.scaling.target: unknown key; allowed keys here: targetBacklogPerInstance",
        ),
        (
            {"worker": prod_worker(minSize=0, desiredCapacity=0)},
            "django-stack:worker.minSize: 0 with maxSize 4: the scaling metric (backlog per in-service instance) "
            "is undefined with no instance",
        ),
        (
            {"worker": prod_worker(queues=[queue("default"), *[queue(f"q{i}") for i in range(9)]])},
            "django-stack:worker.queues: 10 queues while the group scales (minSize < maxSize, beat on)",
        ),
    ],
)
def test_alert_and_scaling_keys_are_checked_by_name(overrides, expected):
    message = settings_error(overrides)
    assert len(message.splitlines()) == 1
    assert expected in message


def test_a_fixed_worker_group_may_be_empty_or_serve_ten_queues():
    fixed = prod_worker(
        minSize=0, desiredCapacity=0, maxSize=0, queues=[queue("default"), *[queue(f"q{i}") for i in range(9)]]
    )
    values = {**prod_config_values(), "worker": json.dumps(fixed)}
    assert load_settings(values, stack="prod", region="eu-west-1").worker.scales is False


def test_bad_alert_and_scaling_keys_stop_before_any_resource():
    message = errors_for({"alerts.backlogMinutes": 0, "worker.scaling.targetBacklogPerInstance": -1})
    assert "django-stack:alerts.backlogMinutes: got 0" in message
    assert "django-stack:worker.scaling.targetBacklogPerInstance: got -1" in message


def test_a_protected_stack_without_an_alert_subscriber_is_refused():
    message = errors_for({"alerts.emails": []})
    assert message.splitlines()[1:] == [
        "django-stack:alerts.emails: empty while security.protect is true; a protected stack's alarms and "
        "broker events would reach nobody: list at least one address (each confirms by mail)"
    ]


def test_an_unprotected_stack_may_have_no_alert_subscriber():
    values = {**prod_config_values(), "alerts": json.dumps({}), "security": json.dumps({"protect": False})}
    assert load_settings(values, stack="prod", region="eu-west-1").alerts.emails == ()


# --- what AWS would refuse, refused first (issue 23.5) -------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"web.instanceType": "t4g.gigantic"},
            "django-stack:web.instanceType: got 't4g.gigantic'; not an EC2 instance type",
        ),
        (
            {"worker.instanceType": "t4g.smal"},
            "django-stack:worker.instanceType: got 't4g.smal'; not an EC2 instance type (did you mean 't4g.small'?); "
            "checked against pulumi-aws ",
        ),
        (
            {"web.instanceType": "t4g.small"},
            "django-stack:web.instanceType: got 't4g.small'; an arm64 type while instances.architecture is x86_64 "
            "(the image's): choose a x86_64 type or set instances.architecture: arm64",
        ),
        (
            {"instances.architecture": "arm64", "web.instanceType": "t4g.small"},
            "django-stack:worker.instanceType: got 't3.medium'; an x86_64 type while instances.architecture is arm64",
        ),
        (
            {"web.instanceType": "mac2.metal"},
            "django-stack:web.instanceType: got 'mac2.metal'; Mac instances run on dedicated hosts only",
        ),
        (
            {
                "network": {
                    "vpcId": "vpc-0123456789abcdef0",
                    "vpcCidr": "10.40.0.0/16",
                    "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                    "publicSubnetIds": ["subnet-0123456789abcdef2", "subnet-0123456789abcdef3"],
                }
            },
            "django-stack:network.vpcCidr: only for a new VPC; an existing VPC (vpcId) keeps its own range",
        ),
        (
            {"web.gunicornTimeout": 3600},
            "django-stack:web.gunicornTimeout: got 3600; at most 3570: the load balancer drains an instance for "
            "gunicornTimeout + 30 s and allows at most 3600 s",
        ),
        (
            {"network.publicSubnetIds": ["subnet-0123456789abcdef0\n"]},
            "django-stack:network.publicSubnetIds[0]: got 'subnet-0123456789abcdef0\\n'; use a subnet id",
        ),
        (
            {
                "loadBalancer": {
                    "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-4444\n"
                }
            },
            "django-stack:loadBalancer.certificateArn: got 'arn:aws:acm:eu-west-1:123456789012:certificate/"
            "0a1b2c3d-1111-2222-3333-4444\\n'; use an ACM certificate ARN",
        ),
        (
            {"security.keyAdministratorArn": "arn:aws:iam::123456789012:role/deploy\n"},
            "django-stack:security.keyAdministratorArn: got 'arn:aws:iam::123456789012:role/deploy\\n'; "
            "use an IAM root, role or user ARN",
        ),
        (
            {"app.environment": {"API_HOST": {"secure": "v1:c2FsdA==:Y2lwaGVy"}}},
            "django-stack:app.environment.API_HOST: a `pulumi config set --secret` value; stack config lands in "
            "plain user-data or in the state, so no key here takes a secret: store it in Parameter Store "
            "(SecureString) and name it in app.secretParameters",
        ),
    ],
)
def test_what_aws_would_refuse_is_refused_first_in_one_line(overrides, expected):
    message = errors_for(overrides)
    assert expected in message
    assert len(message.splitlines()) == 2, message  # the heading and this one line


def test_an_arm64_stack_with_graviton_types_and_a_bounded_timeout_pass():
    values = prod_config_values()
    for section, changes in (
        ("instances", {"architecture": "arm64"}),
        ("web", {"instanceType": "t4g.small", "gunicornTimeout": 3570}),
        ("worker", {"instanceType": "m7g.large"}),
    ):
        values[section] = json.dumps({**json.loads(values[section]), **changes})
    settings = load_settings(values, stack="prod", region="eu-west-1")
    assert (settings.web.instance_type, settings.worker.instance_type) == ("t4g.small", "m7g.large")


def test_a_secret_the_engine_hands_over_decrypted_is_refused_by_its_key(monkeypatch):
    # `pulumi config set --secret --path alerts.emails[0] ...`: the engine decrypts it and lists the key.
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["django-stack:alerts"]))
    message = errors_for({})
    assert message.splitlines()[1:] == [
        "django-stack:alerts: a `pulumi config set --secret` value; stack config lands in plain user-data or "
        "in the state, so no key here takes a secret: store it in Parameter Store (SecureString) and name it in "
        "app.secretParameters"
    ]


def test_every_graviton_family_the_provider_knows_is_arm64():
    known, source = ec2_instance_types()
    families = {instance_type.split(".")[0] for instance_type in known}
    graviton_named = {family for family in families if re.fullmatch(r"[a-z]+\d+g[a-z]*", family)}
    assert graviton_named <= ARM64_FAMILIES, f"{source}: add {sorted(graviton_named - ARM64_FAMILIES)}"
    assert ARM64_FAMILIES <= families, f"not in {source}: {sorted(ARM64_FAMILIES - families)}"
    assert instance_type_architecture("t3.small") == "x86_64"
    assert instance_type_architecture("g5g.xlarge") == "arm64"


@pytest.mark.parametrize("preview", [True, False], ids=["preview", "up"])
def test_a_pinned_image_of_another_architecture_is_refused_before_any_resource(preview):
    # The mocked lookup answers an x86_64 image, as AWS would for an amd64 Debian AMI.
    arm64 = {"instances.architecture": "arm64", "web.instanceType": "t4g.small", "worker.instanceType": "t4g.medium"}
    message = errors_for({**arm64, "instances.amiId": "ami-0123456789abcdef0"}, preview=preview)
    assert message.splitlines()[1:] == [
        "django-stack:instances.amiId: ami-0123456789abcdef0 is an x86_64 image while instances.architecture is "
        "arm64: pin an image of that architecture or change instances.architecture"
    ]
