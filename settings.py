"""The stack's settings: every value a stack varies, read once from stack config and validated.

`load_settings` is pure (a mapping in, a frozen `Settings` out) so it is tested without Pulumi.
pydantic does the type checking; this module adds the rules a wrong value would otherwise break
late, inside AWS or on a booted machine, and rewrites every error as one line that names the
config key, the value received and what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

PROJECT = "django-stack"

# ElastiCache's own rules, checked here so `pulumi preview` fails instead of `pulumi up`.
_SNAPSHOT_WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
_DAY = r"(mon|tue|wed|thu|fri|sat|sun)"
_MAINTENANCE_WINDOW = rf"^{_DAY}:([01]\d|2[0-3]):[0-5]\d-{_DAY}:([01]\d|2[0-3]):[0-5]\d$"
_PYTHON_MODULE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"

PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0, le=50)]
Seconds = Annotated[int, Field(ge=1, le=7 * 24 * 3600)]


class ConfigError(ValueError):
    """Stack config is invalid; the message has one line per problem, each naming its key."""


class _Section(BaseModel):
    # camelCase keys in Pulumi.<stack>.yaml, snake_case in Python; unknown keys are errors
    # because a misspelled key silently falling back to a default is the worst failure here.
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class NetworkSettings(_Section):
    """An existing VPC (`vpcId` + `privateSubnetIds`) or, when none is given, a new one."""

    vpc_id: Annotated[str, Field(pattern=r"^vpc-[0-9a-f]{8,17}$")] | None = None
    private_subnet_ids: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")], ...] = ()
    vpc_cidr: IPv4Network = IPv4Network("10.40.0.0/16")
    availability_zones: Annotated[int, Field(ge=2, le=6)] = 2
    nat_gateways: Literal["single", "perAz"] = "single"

    @model_validator(mode="after")
    def _existing_or_new(self) -> NetworkSettings:
        if self.vpc_id and len(set(self.private_subnet_ids)) < 2:
            raise ValueError(
                "privateSubnetIds: an existing VPC needs at least 2 distinct private subnets "
                "(in 2 availability zones) for Redis Multi-AZ and the instances"
            )
        if not self.vpc_id and self.private_subnet_ids:
            raise ValueError("privateSubnetIds: only allowed together with vpcId")
        if self.vpc_cidr.prefixlen > 20:
            raise ValueError(f"vpcCidr: {self.vpc_cidr} is too small; use a /20 or larger")
        return self


class RedisSettings(_Section):
    engine_version: Annotated[str, Field(pattern=r"^7\.[0-9]+$")] = "7.1"
    node_type: Annotated[str, Field(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")] = "cache.t4g.small"
    replicas: Annotated[int, Field(ge=0, le=5)] = 1
    multi_az: bool = True
    snapshot_retention_days: Annotated[int, Field(ge=1, le=35)] = 7
    snapshot_window: Annotated[str, Field(pattern=_SNAPSHOT_WINDOW)] = "03:00-04:00"
    maintenance_window: Annotated[str, Field(pattern=_MAINTENANCE_WINDOW)] = "sun:05:00-sun:06:00"
    apply_immediately: bool = False
    slow_log_retention_days: Annotated[int, Field(ge=1, le=3653)] = 14
    # A CA bundle on the instances for a Redis whose certificate is not publicly trusted
    # (self-managed Redis, the tests). ElastiCache's certificates chain to the system store.
    ca_cert_file: Annotated[str, Field(pattern=r"^/[^\s?&#]+$")] | None = None
    # Token rotation (README): bump the version with strategy ROTATE (old and new token both
    # valid), move every client to the new one, then apply once more with SET.
    auth_token_version: Annotated[int, Field(ge=1)] = 1
    auth_token_update_strategy: Literal["ROTATE", "SET"] = "ROTATE"

    @model_validator(mode="after")
    def _failover_needs_replica(self) -> RedisSettings:
        if self.multi_az and self.replicas < 1:
            raise ValueError("multiAz: true needs replicas >= 1 (ElastiCache fails over to a replica)")
        return self


class AppSettings(_Section):
    module: Annotated[str, Field(pattern=_PYTHON_MODULE)] = "proj"
    settings_module: Annotated[str, Field(pattern=_PYTHON_MODULE)] | None = None
    wsgi_app: Annotated[str, Field(pattern=rf"{_PYTHON_MODULE[:-1]}:[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    release: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    # s3: new instances download the release artifact; ami: the AMI already carries it.
    source: Literal["s3", "ami"] = "s3"
    artifact_bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] | None = None
    artifact_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9._-]+/)*$")] = "releases/"
    allowed_hosts: tuple[Annotated[str, Field(min_length=1)], ...] = ("localhost",)
    result_backend: bool = False
    result_expires: Seconds = 86400

    @model_validator(mode="after")
    def _artifact_source(self) -> AppSettings:
        if self.source == "s3" and not self.artifact_bucket:
            raise ValueError("artifactBucket: required when source is 's3'")
        return self

    @property
    def django_settings_module(self) -> str:
        return self.settings_module or f"{self.module}.settings.production"

    @property
    def wsgi_application(self) -> str:
        return self.wsgi_app or f"{self.module}.wsgi:application"

    @property
    def artifact_key(self) -> str:
        return f"{self.artifact_prefix}{self.release}.tar.gz"


class InstanceSettings(_Section):
    """What every instance shares: the image and the root volume."""

    ami_id: Annotated[str, Field(pattern=r"^ami-[0-9a-f]{8,17}$")] | None = None
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    root_volume_gb: Annotated[int, Field(ge=8, le=1024)] = 20


class WebSettings(_Section):
    count: Count = 2
    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] = "t3.small"
    port: Annotated[int, Field(ge=1024, le=65535)] = 8000
    gunicorn_workers: Annotated[int, Field(ge=1, le=64)] = 3
    gunicorn_timeout: Annotated[int, Field(ge=1, le=3600)] = 30
    # The only ingress the web role ever gets: explicit, and to the gunicorn port only.
    ingress_cidrs: tuple[IPv4Network, ...] = ()
    ingress_security_group_ids: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")], ...] = ()

    @model_validator(mode="after")
    def _no_world_ingress(self) -> WebSettings:
        if any(cidr.prefixlen == 0 for cidr in self.ingress_cidrs):
            raise ValueError(
                "ingressCidrs: 0.0.0.0/0 would open gunicorn to the internet; put a load balancer "
                "in front and list its security group in ingressSecurityGroupIds"
            )
        return self


class QueueSettings(_Section):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    concurrency: Annotated[int, Field(ge=1, le=256)]
    soft_time_limit: Seconds
    hard_time_limit: Seconds
    routes: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.*]*$")], ...] = ()

    @model_validator(mode="after")
    def _soft_below_hard(self) -> QueueSettings:
        if self.soft_time_limit >= self.hard_time_limit:
            raise ValueError(
                f"softTimeLimit ({self.soft_time_limit}) must be below hardTimeLimit "
                f"({self.hard_time_limit}) so the task can clean up before it is killed"
            )
        return self


def _default_queues() -> tuple[QueueSettings, ...]:
    return (
        QueueSettings(name="default", concurrency=4, soft_time_limit=240, hard_time_limit=300),
        QueueSettings(name="long", concurrency=2, soft_time_limit=1500, hard_time_limit=1800),
    )


class WorkerSettings(_Section):
    count: Count = 2
    instance_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")] = "t3.medium"
    beat: bool = True
    queues: tuple[QueueSettings, ...] = Field(default_factory=_default_queues, min_length=1, max_length=12)
    # Added to the largest hard time limit: systemd's stop timeout (warm shutdown) and the
    # broker's visibility timeout must both outlast any task the worker may be running.
    stop_margin_seconds: Annotated[int, Field(ge=10, le=3600)] = 60
    visibility_timeout: Seconds | None = None

    @model_validator(mode="after")
    def _queues_and_beat(self) -> WorkerSettings:
        names = [queue.name for queue in self.queues]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"queues: {', '.join(repr(n) for n in twice)} named twice; queue names must be unique")
        if "default" not in names:
            raise ValueError("queues: a queue named 'default' is required (Celery routes unrouted tasks there)")
        routes = [route for queue in self.queues for route in queue.routes]
        routed_twice = sorted({route for route in routes if routes.count(route) > 1})
        if routed_twice:
            raise ValueError(f"queues: task route(s) {', '.join(routed_twice)} listed under more than one queue")
        if self.beat and self.count == 0:
            raise ValueError("beat: true needs count >= 1 (Beat runs on one of the workers)")
        if self.visibility_timeout is not None and self.visibility_timeout <= self.max_hard_time_limit:
            raise ValueError(
                f"visibilityTimeout ({self.visibility_timeout}) must be above the largest "
                f"hardTimeLimit ({self.max_hard_time_limit}), or acks_late tasks are redelivered while running"
            )
        return self

    @property
    def max_hard_time_limit(self) -> int:
        return max(queue.hard_time_limit for queue in self.queues)

    @property
    def broker_visibility_timeout(self) -> int:
        return self.visibility_timeout or self.max_hard_time_limit + 2 * self.stop_margin_seconds

    def stop_timeout(self, queue: QueueSettings) -> int:
        return queue.hard_time_limit + self.stop_margin_seconds

    def queue(self, name: str) -> QueueSettings:
        return next(queue for queue in self.queues if queue.name == name)

    @property
    def default_queue(self) -> QueueSettings:
        return self.queue("default")


class StackConfig(_Section):
    """The project's config namespace (`django-stack:<key>`), one key per concern."""

    network: NetworkSettings = NetworkSettings()
    redis: RedisSettings = RedisSettings()
    app: AppSettings
    instances: InstanceSettings = InstanceSettings()
    web: WebSettings = WebSettings()
    worker: WorkerSettings = WorkerSettings()

    @model_validator(mode="after")
    def _ami_source(self) -> StackConfig:
        if self.app.source == "ami" and not self.instances.ami_id:
            raise ValueError("instances.amiId: required when app.source is 'ami' (the AMI carries the release)")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    project: str
    stack: str
    region: str
    config: StackConfig

    @property
    def network(self) -> NetworkSettings:
        return self.config.network

    @property
    def redis(self) -> RedisSettings:
        return self.config.redis

    @property
    def app(self) -> AppSettings:
        return self.config.app

    @property
    def instances(self) -> InstanceSettings:
        return self.config.instances

    @property
    def web(self) -> WebSettings:
        return self.config.web

    @property
    def worker(self) -> WorkerSettings:
        return self.config.worker

    def parameter_name(self, purpose: str) -> str:
        """Parameter Store names, one tree per stack so IAM can grant exactly these."""
        return f"/{self.project}/{self.stack}/{purpose}"


_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def load_settings(raw: Mapping[str, Any], *, stack: str, region: str | None) -> Settings:
    """Builds the settings from the project's config values (key without namespace -> value).

    Values arrive as Pulumi passes them: objects and lists as JSON text, scalars as strings.
    Raises ConfigError listing every problem, one line each.
    """
    problems: list[str] = []
    if not region:
        problems.append("aws:region: missing; set it with `pulumi config set aws:region eu-west-1`")
    elif not _REGION.match(region):
        problems.append(f"aws:region: got {region!r}; expected an AWS region name such as eu-west-1")
    values = {key: _decode(value) for key, value in raw.items()}
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        problems.extend(_describe(err) for err in error.errors())
        raise ConfigError("\n".join(problems)) from None
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(project=PROJECT, stack=stack, region=region or "", config=config)


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _describe(error: Mapping[str, Any]) -> str:
    key = _dotted(error["loc"])
    where = f"{PROJECT}:{key}" if key else PROJECT
    kind = error["type"]
    if kind == "missing":
        return f"{where}: missing; this key is required (see the README's config reference)"
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        return f"{where}: unknown key; allowed keys here: {', '.join(_keys_at(parent))}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return f"{where}: {message}"
    return f"{where}: got {error.get('input')!r}; {message[0].lower()}{message[1:]}"


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    return [f.alias or name for name, f in model.model_fields.items()] if model else []
