"""The stack config's schema: each section's keys, their types, ranges and defaults (msgspec
does the checking, and costs next to nothing at import, which matters: the program runs on every
`pulumi preview`), and each section's own rules (`__post_init__`). A wrong value is refused here
rather than late, inside AWS or on a booted machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

import release_name
from aws_limits import MAX_LIFECYCLE_HOLD_SECONDS
from userdata.layout import (
    AGENT_VERSION_PATTERN,
    AGENT_VERSIONS,
    CLOUDWATCH_AGENT_PACKAGE,
    RELEASE_DIGEST_SEPARATOR,
    SSM_AGENT_PACKAGE,
    parameter_name,
)


def _full(pattern: str) -> str:
    """msgspec's `pattern` searches: anchored with \\A and \\Z (never `$`, which also accepts a
    trailing newline) so the whole value must match."""
    return rf"\A(?:{pattern})\Z"


# Each rule carries the words an error shows instead of the regex (`description`).
_HHMM = r"([01]\d|2[0-3]):[0-5]\d"
_DAY = r"(mon|tue|wed|thu|fri|sat|sun)"
_PYTHON_MODULE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"

Count = Annotated[int, Meta(ge=0, le=50)]
Percent = Annotated[int, Meta(ge=0, le=100)]
Seconds = Annotated[int, Meta(ge=1, le=7 * 24 * 3600, description="seconds")]
LogRetentionDays = Annotated[
    int, Meta(description="days, one of CloudWatch Logs' retentions: 1, 3, 5, 7, 14, 30, 60, 90, ..., 3653")
]
InstanceType = Annotated[
    str, Meta(pattern=_full(r"[a-z][a-z0-9-]*\.[a-z0-9]+"), description='an EC2 instance type, e.g. "t3.small"')
]
SecurityGroupId = Annotated[
    str, Meta(pattern=_full(r"sg-[0-9a-f]{8,17}"), description='a security group id, e.g. "sg-0a1b2c3d4e5f67890"')
]
PythonModule = Annotated[
    str, Meta(pattern=_full(_PYTHON_MODULE), description='a dotted Python module name, e.g. "proj.settings"')
]
Cidr = Annotated[
    str, Meta(pattern=_full(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}"), description='an IPv4 CIDR, e.g. "10.40.0.0/16"')
]
# Pinned, never `latest`: a new agent reaches the fleet when the stack says so (docs/agents.md).
AgentVersion = Annotated[
    str, Meta(pattern=_full(AGENT_VERSION_PATTERN), description='an agent release AWS publishes, e.g. "3.3.4851.0"')
]
ReleaseName = Annotated[str, Meta(pattern=_full(release_name.PATTERN), description=release_name.RULE)]
# app.release: a release name, optionally pinned to its artifact's SHA-256 as the live release
# records it (userdata/layout.py RELEASE_DIGEST_SEPARATOR; docs/release-digest.md).
PinnedReleaseName = Annotated[
    str,
    Meta(
        pattern=_full(rf"{release_name.PATTERN}({re.escape(RELEASE_DIGEST_SEPARATOR)}[0-9a-f]{{64}})?"),
        description=f"a release name ({release_name.RULE}), optionally pinned: @sha256:<the artifact's 64 hex digits> "
        "as build-release prints it",
    ),
]
# Django's ALLOWED_HOSTS entries (a host, `.domain`, `*`, an IP or `[v6]`); joined with commas
# into one env value, so neither a comma nor a quote may appear in one.
AllowedHost = Annotated[
    str,
    Meta(
        pattern=_full(r"[A-Za-z0-9.*:\[\]-]+"),
        description='a host name Django accepts, e.g. "example.com", ".example.com" or "*"',
    ),
]


class ConfigError(ValueError):
    """Stack config is invalid; the message has one line per problem, each naming its key."""


def _snake(key: str) -> str:
    return re.sub(r"[A-Z]", lambda upper: "_" + upper[0].lower(), key)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """camelCase keys in Pulumi.<stack>.yaml, snake_case in Python. Unknown keys are errors:
    a misspelled key silently falling back to a default is the worst failure here.
    (Subclasses repeat `frozen=True` only so type checkers see it; msgspec inherits it.)"""


def _problem(key: str, message: str) -> ValueError:
    # Raised from __post_init__: msgspec adds the section's path, _describe the key.
    return ValueError(f"{key}: {message}")


SubnetId = Annotated[
    str, Meta(pattern=_full(r"subnet-[0-9a-f]{8,17}"), description='a subnet id, e.g. "subnet-0a1b2c3d4e5f67890"')
]
DEFAULT_VPC_CIDR = "10.40.0.0/16"


class NetworkSettings(_Section, frozen=True):
    """An existing VPC (`vpcId` + `privateSubnetIds`) or, when none is given, a new one."""

    vpc_id: (
        Annotated[str, Meta(pattern=_full(r"vpc-[0-9a-f]{8,17}"), description='a VPC id, e.g. "vpc-0a1b2c3d4e5f67890"')]
        | None
    ) = None
    private_subnet_ids: tuple[SubnetId, ...] = ()
    # A new VPC's range; None: DEFAULT_VPC_CIDR (read it through `cidr`). Refused beside vpcId,
    # where it would be silently ignored.
    vpc_cidr: Cidr | None = None
    availability_zones: Annotated[int, Meta(ge=2, le=6)] = 2
    nat_gateways: Literal["single", "perAz"] = "single"
    # An existing VPC's public subnets: where the load balancer goes (a new VPC has its own).
    public_subnet_ids: tuple[SubnetId, ...] = ()

    @property
    def cidr(self) -> str:
        return self.vpc_cidr or DEFAULT_VPC_CIDR

    def __post_init__(self) -> None:
        if self.vpc_id and self.vpc_cidr:
            raise _problem("vpcCidr", "only for a new VPC; an existing VPC (vpcId) keeps its own range: remove vpcCidr")
        if not self.vpc_id and self.public_subnet_ids:
            raise _problem("publicSubnetIds", "only allowed together with vpcId")
        if self.public_subnet_ids and len(set(self.public_subnet_ids)) < 2:
            raise _problem("publicSubnetIds", "needs at least 2 distinct subnets (an ALB spans 2 availability zones)")
        if self.vpc_id and len(set(self.private_subnet_ids)) < 2:
            raise _problem(
                "privateSubnetIds",
                "an existing VPC needs at least 2 distinct private subnets "
                "(in 2 availability zones) for Redis Multi-AZ and the instances",
            )
        if not self.vpc_id and self.private_subnet_ids:
            raise _problem("privateSubnetIds", "only allowed together with vpcId")
        prefix = _network("vpcCidr", self.cidr).prefixlen
        if prefix < 16:
            raise _problem("vpcCidr", f"{self.cidr} is larger than AWS allows; use a /16 to /20")
        # AWS accepts down to /28, but the subnet plan (network.py) cuts the VPC into 16 blocks
        # and gives each zone's private subnet one: a /20 leaves each a /24 (251 addresses).
        if prefix > 20:
            raise _problem("vpcCidr", f"{self.cidr} is too small for one /24 per zone; use a /16 to /20")


def _network(key: str, cidr: str) -> IPv4Network:
    try:
        return IPv4Network(cidr)
    except ValueError as error:
        raise _problem(key, f"{cidr!r} is not an IPv4 network ({error})") from None


def _distinct_networks(key: str, cidrs: tuple[str, ...]) -> list[IPv4Network]:
    networks = [_network(key, cidr) for cidr in cidrs]
    twice = sorted({str(n) for n in networks if networks.count(n) > 1})
    if twice:
        raise _problem(key, f"{', '.join(twice)} listed twice; list each network once")
    return networks


def _cover_everything(networks: list[IPv4Network]) -> bool:
    """Any set that together covers every address, not only the literal 0.0.0.0/0."""
    return bool(networks) and list(collapse_addresses(networks)) == [IPv4Network("0.0.0.0/0")]


@dataclass(frozen=True)
class EngineVersions:
    """The versions of one ElastiCache engine this stack creates groups with."""

    pattern: str
    allowed: str  # the rule in words, for the error
    default: str


# ElastiCache's parameter group families follow engine and major version (redis7, valkey7,
# valkey8: "Engine specific parameters"); Valkey starts at 7.2. Cluster mode and Serverless are
# not offered for either engine: kombu's Redis transport needs one keyspace (docs/architecture.md).
ENGINE_VERSIONS: dict[str, EngineVersions] = {
    "redis": EngineVersions(r"7\.[0-9]+", '7.x, e.g. "7.1"', "7.1"),
    "valkey": EngineVersions(r"7\.2|8\.[0-9]+", '7.2 or 8.x, e.g. "8.1"', "8.1"),
}


class RedisSettings(_Section, frozen=True):
    engine: Literal["redis", "valkey"] = "redis"
    # None: the engine's default (ENGINE_VERSIONS); read it through `version`.
    engine_version: (
        Annotated[str, Meta(pattern=_full(r"[0-9]+\.[0-9]+"), description='major.minor, e.g. "7.1"')] | None
    ) = None
    node_type: Annotated[
        str,
        Meta(pattern=_full(r"cache\.[a-z0-9]+\.[a-z0-9]+"), description='a cache node type, e.g. "cache.t4g.small"'),
    ] = "cache.t4g.small"
    replicas: Annotated[int, Meta(ge=0, le=5)] = 1
    multi_az: bool = True
    snapshot_retention_days: Annotated[int, Meta(ge=1, le=35)] = 7
    snapshot_window: Annotated[
        str, Meta(pattern=_full(rf"{_HHMM}-{_HHMM}"), description='HH:MM-HH:MM in UTC, e.g. "03:00-04:00"')
    ] = "03:00-04:00"
    maintenance_window: Annotated[
        str,
        Meta(
            pattern=_full(rf"{_DAY}:{_HHMM}-{_DAY}:{_HHMM}"),
            description='ddd:HH:MM-ddd:HH:MM in UTC, e.g. "sun:05:00-sun:06:00"',
        ),
    ] = "sun:05:00-sun:06:00"
    apply_immediately: bool = False
    slow_log_retention_days: Annotated[LogRetentionDays, Meta(ge=1, le=3653)] = 14
    # A CA bundle on the instances for a Redis whose certificate is not publicly trusted
    # (self-managed Redis, the tests). ElastiCache's certificates chain to the system store.
    ca_cert_file: (
        Annotated[
            str,
            Meta(
                pattern=_full(r"/[^\s?&#'\"]+"),
                description='an absolute path without spaces, quotes, ?, & or #, e.g. "/etc/ssl/certs/redis-ca.pem"',
            ),
        ]
        | None
    ) = None
    # Token rotation (docs/operations.md): bump the version with strategy ROTATE (old and new token both
    # valid), move every client to the new one, then apply once more with SET.
    auth_token_version: Annotated[int, Meta(ge=1)] = 1
    auth_token_update_strategy: Literal["ROTATE", "SET"] = "ROTATE"

    @property
    def version(self) -> str:
        return self.engine_version or ENGINE_VERSIONS[self.engine].default

    def __post_init__(self) -> None:
        versions = ENGINE_VERSIONS[self.engine]
        if not re.fullmatch(versions.pattern, self.version):
            raise _problem("engineVersion", f"got {self.version!r}; engine {self.engine} needs {versions.allowed}")
        if self.multi_az and self.replicas < 1:
            raise _problem("multiAz", "true needs replicas >= 1 (ElastiCache fails over to a replica)")
        _check_retention("slowLogRetentionDays", self.slow_log_retention_days)
        snapshot, maintenance = daily_window(self.snapshot_window), weekly_window(self.maintenance_window)
        for key, value, window in (
            ("snapshotWindow", self.snapshot_window, snapshot),
            ("maintenanceWindow", self.maintenance_window, maintenance),
        ):
            if window[1] < MINIMUM_WINDOW_MINUTES:
                raise _problem(
                    key, f"{value} is {window[1]} minutes; ElastiCache needs at least {MINIMUM_WINDOW_MINUTES}"
                )
        if any(_overlap((day * MINUTES_PER_DAY + snapshot[0], snapshot[1]), maintenance) for day in range(7)):
            raise _problem(
                "snapshotWindow",
                f"{self.snapshot_window} overlaps maintenanceWindow {self.maintenance_window}; "
                "ElastiCache refuses overlapping windows",
            )


# ElastiCache's documented minimum for both windows (ModifyReplicationGroup: "The minimum
# maintenance window is a 60 minute period"; the same for the snapshot window).
MINIMUM_WINDOW_MINUTES = 60
MINUTES_PER_DAY, MINUTES_PER_WEEK = 24 * 60, 7 * 24 * 60
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Window = tuple[int, int]  # (start, length) in minutes; days as minutes of the week


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def daily_window(text: str) -> Window:
    """`HH:MM-HH:MM` as (start minute of the day, length); it may run past midnight."""
    start, end = (_minutes(part) for part in text.split("-"))
    return start, (end - start) % MINUTES_PER_DAY


def weekly_window(text: str) -> Window:
    """`ddd:HH:MM-ddd:HH:MM` as (start minute of the week, length); it may run past Sunday."""
    start, end = (_DAYS.index(part[:3]) * MINUTES_PER_DAY + _minutes(part[4:]) for part in text.split("-"))
    return start, (end - start) % MINUTES_PER_WEEK


def _overlap(first: Window, second: Window) -> bool:
    """Two spans on the week's circle share a minute."""
    return (first[0] - second[0]) % MINUTES_PER_WEEK < second[1] or (second[0] - first[0]) % MINUTES_PER_WEEK < first[1]


class AppSettings(_Section, frozen=True):
    release: PinnedReleaseName
    module: PythonModule = "proj"
    settings_module: PythonModule | None = None
    wsgi_app: (
        Annotated[
            str,
            Meta(
                pattern=_full(rf"{_PYTHON_MODULE}:[A-Za-z_][A-Za-z0-9_]*"),
                description='module:name of the WSGI callable, e.g. "proj.wsgi:application"',
            ),
        ]
        | None
    ) = None
    # s3: new instances download the release artifact; ami: the AMI already carries it.
    source: Literal["s3", "ami"] = "s3"
    artifact_bucket: (  # checked by S3's naming rules below
        Annotated[str, Meta(description='an S3 bucket name (no s3://, no path), e.g. "my-releases"')] | None
    ) = None
    artifact_prefix: Annotated[
        str, Meta(pattern=_full(r"([A-Za-z0-9._-]+/)*"), description='"" or folders ending in "/", e.g. "releases/"')
    ] = "releases/"
    allowed_hosts: tuple[AllowedHost, ...] = ("localhost",)
    result_backend: bool = False
    result_expires: Seconds = 86400
    # The app's own settings: plain values into app.env, and env name -> Parameter Store name
    # for secrets, fetched at boot into the secrets file (never in user-data or the state).
    # (Numbers and booleans are taken only to be refused with the key named: YAML's `on`/`7.1`.)
    environment: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    secret_parameters: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    # gunicorn and Celery reach the instance metadata service (the role's credentials) only when
    # the app itself calls AWS with the role (S3 media, SES).
    aws_credentials: bool = False
    # A new value stores a newly generated Django SECRET_KEY (docs/secrets.md: sessions and signed
    # values made with the old key stop validating once instances have the new one).
    secret_key_version: Annotated[int, Meta(ge=1)] = 1
    # Run once per release before any instance serves it (docs/release-command.md); "" disables it.
    release_command: str = "python manage.py migrate --noinput"

    def __post_init__(self) -> None:
        if not RELEASE_COMMAND.fullmatch(self.release_command):
            raise _problem("releaseCommand", f"got {self.release_command!r}; use {RELEASE_COMMAND_RULE}")
        if self.source == "s3" and not self.artifact_bucket:
            raise _problem("artifactBucket", "required when source is 's3'")
        if self.artifact_bucket is not None and (problem := bucket_name_problem(self.artifact_bucket)):
            raise _problem("artifactBucket", f"got {self.artifact_bucket!r}; {problem}")
        for key, mapping, rule, allowed in (
            ("environment", self.environment, ENV_VALUE, ENV_VALUE_RULE),
            ("secretParameters", self.secret_parameters, PARAMETER_NAME, PARAMETER_NAME_RULE),
        ):
            for name, value in mapping.items():
                if not ENV_NAME.fullmatch(name):
                    raise _problem(f"{key}.{name}", f"not an environment variable name; use {ENV_NAME_RULE}")
                if not isinstance(value, str):
                    raise _problem(f"{key}.{name}", f'got {value!r}, not text; quote it in the stack file: "{value}"')
                if not rule.fullmatch(value):
                    raise _problem(f"{key}.{name}", f"got {value!r}; use {allowed}")
        for name, value in self.environment.items():
            if looks := credential_problem(name, str(value)):
                raise _problem(
                    f"environment.{name}",
                    f"{looks}: app.environment lands in plain user-data, readable by anyone who may describe "
                    "the instances; store it in Parameter Store (SecureString) and name it in app.secretParameters",
                )
        if both := sorted(set(self.environment) & set(self.secret_parameters)):
            raise _problem("secretParameters", f"{', '.join(both)} also set in environment; set each name once")

    @property
    def django_settings_module(self) -> str:
        return self.settings_module or f"{self.module}.settings.production"

    @property
    def wsgi_application(self) -> str:
        return self.wsgi_app or f"{self.module}.wsgi:application"

    @property
    def artifact_key(self) -> str:
        return f"{self.artifact_prefix}{self.release.partition(RELEASE_DIGEST_SEPARATOR)[0]}.tar.gz"


ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
ENV_NAME_RULE = 'up to 64 capitals, digits or "_", starting with a capital, e.g. "DATABASE_URL"'
# What an env file line can hold as systemd and a POSIX shell both read it (userdata render_env).
ENV_VALUE = re.compile(r"[^'\n\r\x00]{0,4096}")
ENV_VALUE_RULE = "up to 4096 characters without single quotes or line breaks"
# Parameter Store's own rule for a name in a hierarchy (a path), and no `aws`/`ssm` prefix.
PARAMETER_NAME = re.compile(r"/(?![Aa][Ww][Ss]|[Ss][Ss][Mm])[A-Za-z0-9_.\-/]{1,1010}")
PARAMETER_NAME_RULE = 'a Parameter Store path, e.g. "/myapp/prod/email-api-key"'
# One shell line for /bin/sh in the release's src with its venv first on PATH, e.g.
# "python manage.py migrate --noinput && python manage.py createcachetable".
RELEASE_COMMAND = re.compile(r"(?=[^\s])[^'\n\r\x00]{1,4096}|")
RELEASE_COMMAND_RULE = '"" (none) or one shell command line of up to 4096 characters, no single quotes or line breaks'

# Names and values that carry a credential (issue 22): these belong in app.secretParameters.
_CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|_KEY\Z")
# scheme://user:password@ (a password in the URL's userinfo, user name possibly empty).
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*:[^/?#@\s]+@")


def credential_problem(name: str, value: str) -> str | None:
    """Why an env name or value looks like a credential, in words, or None."""
    if found := _CREDENTIAL_NAME.search(name):
        return "the name ends in _KEY" if found[0] == "_KEY" else f"the name contains {found[0]}"
    if _URL_WITH_PASSWORD.search(value):
        return "the value is a URL with a password (user:password@)"
    return None


_BUCKET_CHARACTERS = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
# S3's general purpose bucket naming rules (docs: "Bucket naming rules").
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """What is wrong with an S3 bucket name, in words, or None."""
    if "://" in name or "/" in name:
        return 'the bucket name only, without s3:// or a path, e.g. "my-artifacts" (the path goes in artifactPrefix)'
    if not _BUCKET_CHARACTERS.fullmatch(name):
        return "3 to 63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit"
    if ".." in name:
        return "two adjacent periods are not allowed in a bucket name"
    if _IP_LIKE.fullmatch(name):
        return "a bucket name must not look like an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        reserved = ", ".join([f"{p}..." for p in _RESERVED_PREFIXES] + [f"...{s}" for s in _RESERVED_SUFFIXES])
        return f"S3 reserves these forms: {reserved}"
    return None


class InstanceSettings(_Section, frozen=True):
    """What every instance shares: the image and the root volume."""

    ami_id: (
        Annotated[
            str, Meta(pattern=_full(r"ami-[0-9a-f]{8,17}"), description='an AMI id, e.g. "ami-0a1b2c3d4e5f67890"')
        ]
        | None
    ) = None
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    root_volume_gb: Annotated[int, Meta(ge=8, le=1024)] = 20
    # Debian's AMIs do not carry the SSM agent: install it at first boot, unless the image has it.
    ssm_agent: Literal["install", "preinstalled"] = "install"
    # The SSM agent release installed at first boot (amazon-ssm-<region>/<version>/debian_<arch>/).
    ssm_agent_version: AgentVersion = AGENT_VERSIONS[SSM_AGENT_PACKAGE]
    # Instance refresh: the share of web and worker capacity kept in service while a changed
    # launch template (image, user-data, type) rolls out. Beat is always replaced terminate-first.
    min_healthy_percentage: Percent = 90


def _check_sizes(min_size: int, desired_capacity: int, max_size: int) -> None:
    if max_size < min_size:
        raise _problem("maxSize", f"{max_size} is below minSize ({min_size})")
    if not min_size <= desired_capacity <= max_size:
        raise _problem(
            "desiredCapacity", f"{desired_capacity} must be between minSize ({min_size}) and maxSize ({max_size})"
        )


TargetGroupArn = Annotated[
    str,
    Meta(
        pattern=_full(r"arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/\S+"),
        description='a target group ARN, e.g. "arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/web/<id>"',
    ),
]


class WebSettings(_Section, frozen=True):
    # The web Auto Scaling group's sizes.
    min_size: Count = 2
    desired_capacity: Count = 2
    max_size: Count = 4
    instance_type: InstanceType = "t3.small"
    port: Annotated[int, Meta(ge=1024, le=65535)] = 8000
    gunicorn_workers: Annotated[int, Meta(ge=1, le=64)] = 3
    gunicorn_timeout: Annotated[int, Meta(ge=1, le=3600)] = 30
    # The only ingress the web role ever gets: explicit, and to the gunicorn port only.
    ingress_cidrs: tuple[Cidr, ...] = ()
    ingress_security_group_ids: tuple[SecurityGroupId, ...] = ()
    # Only with loadBalancer.enabled false: the user's own target groups for the web group.
    target_group_arns: tuple[TargetGroupArn, ...] = ()

    def __post_init__(self) -> None:
        _check_sizes(self.min_size, self.desired_capacity, self.max_size)
        if _cover_everything(_distinct_networks("ingressCidrs", self.ingress_cidrs)):
            raise _problem(
                "ingressCidrs",
                f"{', '.join(self.ingress_cidrs)} would open gunicorn to the internet (together they cover "
                "0.0.0.0/0); put a load balancer in front and list its security group in ingressSecurityGroupIds",
            )


class QueueSettings(_Section, frozen=True):
    name: Annotated[
        str,
        Meta(
            pattern=_full(r"[a-z][a-z0-9_-]{0,31}"),
            description='up to 32 lowercase letters, digits, "_" or "-", starting with a letter, e.g. "default"',
        ),
    ]
    concurrency: Annotated[int, Meta(ge=1, le=256)]
    soft_time_limit: Seconds
    hard_time_limit: Seconds
    routes: tuple[
        Annotated[
            str,
            Meta(
                pattern=_full(r"[A-Za-z_][A-Za-z0-9_.*]*"),
                description='a task name or glob, e.g. "myapp.tasks.report" or "myapp.reports.*"',
            ),
        ],
        ...,
    ] = ()

    def __post_init__(self) -> None:
        if self.soft_time_limit >= self.hard_time_limit:
            raise _problem(
                "softTimeLimit",
                f"{self.soft_time_limit} must be below hardTimeLimit "
                f"({self.hard_time_limit}) so the task can clean up before it is killed",
            )


DEFAULT_QUEUES = (
    QueueSettings(name="default", concurrency=4, soft_time_limit=240, hard_time_limit=300),
    QueueSettings(name="long", concurrency=2, soft_time_limit=1500, hard_time_limit=1800),
)


class WorkerScalingSettings(_Section, frozen=True):
    """How the worker group follows the queues (docs/monitoring.md, "Worker scaling")."""

    # The backlog (messages waiting, all queues) each in-service worker instance should carry:
    # above it the group launches instances, below it terminates them (warm, through the hook).
    target_backlog_per_instance: Annotated[float, Meta(gt=0, le=100_000)] = 20.0


# AWS caps a target tracking policy's metric math at 10 metrics: one per queue's backlog and
# the group's in-service count.
MAX_SCALING_QUEUES = 9


class WorkerSettings(_Section, frozen=True):
    # The worker Auto Scaling group's sizes; the Beat instance (its own group of one, also
    # running every queue) comes on top.
    min_size: Count = 1
    desired_capacity: Count = 1
    max_size: Count = 4
    instance_type: InstanceType = "t3.medium"
    beat: bool = True
    queues: Annotated[tuple[QueueSettings, ...], Meta(min_length=1, max_length=12)] = DEFAULT_QUEUES
    # Added to the largest hard time limit: systemd's stop timeout (warm shutdown) and the
    # broker's visibility timeout must both outlast any task the worker may be running. At least
    # 40: a warm shutdown can wait 30 s more for a pool child (billiard), and a worker killed at
    # the stop timeout loses the task its pending BRPOP popped (docs/e2e.md, lost task).
    stop_margin_seconds: Annotated[int, Meta(ge=40, le=3600)] = 60
    visibility_timeout: Seconds | None = None
    scaling: WorkerScalingSettings = msgspec.field(default_factory=WorkerScalingSettings)

    def __post_init__(self) -> None:
        _check_sizes(self.min_size, self.desired_capacity, self.max_size)
        if self.scales and self.min_size == 0:
            raise _problem(
                "minSize",
                f"0 with maxSize {self.max_size}: the scaling metric (backlog per in-service instance) is "
                "undefined with no instance, so the group would never scale out; use 1 or more "
                "(or maxSize equal to minSize: a fixed group)",
            )
        if self.scales and len(self.queues) > MAX_SCALING_QUEUES:
            raise _problem(
                "queues",
                f"{len(self.queues)} queues while the group scales (minSize < maxSize, beat on): the scaling metric "
                f"sums each queue's backlog and AWS allows 10 metrics per policy, so at most {MAX_SCALING_QUEUES}",
            )
        names = [queue.name for queue in self.queues]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise _problem("queues", f"{', '.join(repr(n) for n in twice)} named twice; queue names must be unique")
        if "default" not in names:
            raise _problem("queues", "a queue named 'default' is required (Celery routes unrouted tasks there)")
        routes = [route for queue in self.queues for route in queue.routes]
        routed_twice = sorted({route for route in routes if routes.count(route) > 1})
        if routed_twice:
            raise _problem("queues", f"task route(s) {', '.join(routed_twice)} listed under more than one queue")
        if self.termination_hold_seconds > MAX_LIFECYCLE_HOLD_SECONDS:
            raise _problem(
                "queues",
                f"the largest hardTimeLimit ({self.max_hard_time_limit}) + 2 x stopMarginSeconds is "
                f"{self.termination_hold_seconds} s, above the {MAX_LIFECYCLE_HOLD_SECONDS} s an Auto Scaling "
                "lifecycle hook can hold a terminating worker for its tasks to finish",
            )
        if self.visibility_timeout is not None and self.visibility_timeout <= self.max_hard_time_limit:
            raise _problem(
                "visibilityTimeout",
                f"{self.visibility_timeout} must be above the largest "
                f"hardTimeLimit ({self.max_hard_time_limit}), or acks_late tasks are redelivered while running",
            )

    @property
    def scales(self) -> bool:
        """The group follows the backlog: it has room to (minSize < maxSize) and the Beat
        instance, which publishes the backlog, exists."""
        return self.min_size < self.max_size and self.beat

    @property
    def termination_hold_seconds(self) -> int:
        """How long a terminating worker is held for its Celery workers to stop warm: the longest
        stop (largest hard limit + margin) plus one more margin to notice and report it."""
        return self.max_hard_time_limit + 2 * self.stop_margin_seconds

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


_HOST_NAME = r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"


class LoadBalancerSettings(_Section, frozen=True):
    """The internet-facing ALB in front of the web group: HTTPS with a certificate the user
    names (`certificateArn`) or one the program issues for `domain` in `hostedZoneId`."""

    enabled: bool = True
    certificate_arn: (
        Annotated[
            str,
            Meta(
                pattern=_full(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+"),
                description='an ACM certificate ARN, e.g. "arn:aws:acm:eu-west-1:123456789012:certificate/<id>"',
            ),
        ]
        | None
    ) = None
    domain: (
        Annotated[str, Meta(pattern=_full(_HOST_NAME), description='a lowercase DNS name, e.g. "app.example.com"')]
        | None
    ) = None
    hosted_zone_id: (
        Annotated[str, Meta(pattern=_full(r"Z[A-Z0-9]{1,31}"), description='a Route 53 zone id, e.g. "Z0123456789ABC"')]
        | None
    ) = None
    # Liveness, not readiness: the group replaces instances that fail it, so it must not depend on
    # the shared broker (a Redis outage would otherwise replace every web instance, in a loop).
    health_check_path: Annotated[str, Meta(description='a URL path from /, e.g. "/livez"')] = "/livez"
    # A bucket whose policy already lets Elastic Load Balancing write to it (AWS's access-log
    # guide); none: no access logs.
    access_logs_bucket: (
        Annotated[
            str,
            Meta(
                pattern=_full(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"), description='an S3 bucket name, e.g. "my-alb-logs"'
            ),
        ]
        | None
    ) = None
    access_logs_prefix: Annotated[
        str,
        Meta(
            pattern=_full(r"([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?"),
            description='"" or folders without leading or trailing "/", e.g. "alb/prod"',
        ),
    ] = ""

    def __post_init__(self) -> None:
        # The ALB's own rule (1-1024 characters, from /); checked here for a message naming the key.
        if not re.fullmatch(r"/[\x21-\x7e]{0,1023}", self.health_check_path):
            raise _problem(
                "healthCheckPath", f"{self.health_check_path!r} must be a URL path starting with / (e.g. /livez)"
            )
        if not self.enabled:
            named = [key for key, value in self._certificate_keys().items() if value]
            if named:
                raise _problem(named[0], "only allowed with enabled true")
            return
        if self.certificate_arn and (self.domain or self.hosted_zone_id):
            raise _problem("certificateArn", "give either certificateArn or domain + hostedZoneId, not both")
        if self.domain and not self.hosted_zone_id:
            raise _problem(
                "hostedZoneId", f"required with domain ({self.domain}): the zone for validation and the alias"
            )
        if self.hosted_zone_id and not self.domain:
            raise _problem("domain", "required with hostedZoneId: the name the certificate and alias record are for")
        if not (self.certificate_arn or self.domain):
            raise _problem(
                "certificateArn",
                "missing: the HTTPS listener needs a certificate; set certificateArn, or domain + hostedZoneId "
                "(or enabled: false to bring your own load balancer)",
            )

    def _certificate_keys(self) -> dict[str, str | None]:
        return {"certificateArn": self.certificate_arn, "domain": self.domain, "hostedZoneId": self.hosted_zone_id}

    @property
    def certificate_region(self) -> str | None:
        return self.certificate_arn.split(":")[3] if self.certificate_arn else None


# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy); any other number
# fails inside AWS, during `pulumi up`.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _check_retention(key: str, days: int) -> None:
    if days not in LOG_RETENTION_DAYS:
        raise _problem(key, f"got {days}; CloudWatch Logs allows {', '.join(map(str, LOG_RETENTION_DAYS))}")


# A KMS key (not an alias): the region is checked against the stack's in load_settings.
_KMS_KEY_ARN = re.compile(
    r"\Aarn:aws(-[a-z]+)*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})\Z"
)
_IAM_PRINCIPAL_ARN = r"\Aarn:aws(-[a-z]+)*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)\Z"


class SecuritySettings(_Section, frozen=True):
    """The stack key, VPC flow logs and deletion protection (docs/security.md)."""

    # Encrypt with this key instead of creating one per stack; its policy must grant what the
    # stack key's grants (docs/security.md).
    kms_key_arn: (
        Annotated[
            str,
            Meta(description='a KMS key ARN in the stack\'s region, e.g. "arn:aws:kms:<region>:<account>:key/<id>"'),
        ]
        | None
    ) = None
    # Who administers the stack key (never uses it to decrypt outside SSM, ElastiCache, EC2):
    # the account (its IAM policies decide) unless a deploy role is named here.
    key_administrator_arn: (
        Annotated[
            str,
            Meta(
                pattern=_IAM_PRINCIPAL_ARN,
                description='an IAM root, role or user ARN, e.g. "arn:aws:iam::123456789012:role/deploy"',
            ),
        ]
        | None
    ) = None
    flow_log_retention_days: LogRetentionDays = 90
    # Refuse to delete the Redis replication group and the stack key (`pulumi destroy` and
    # replacements fail) until this is turned off on purpose.
    protect: bool = False

    def __post_init__(self) -> None:
        if self.kms_key_arn is not None and not _KMS_KEY_ARN.match(self.kms_key_arn):
            raise _problem(
                "kmsKeyArn",
                f"got {self.kms_key_arn!r}; expected a KMS key ARN, arn:aws:kms:<region>:<account>:key/<key id>",
            )
        _check_retention("flowLogRetentionDays", self.flow_log_retention_days)

    def kms_key_region(self) -> str | None:
        match = _KMS_KEY_ARN.match(self.kms_key_arn or "")
        return match["region"] if match else None


class LogSettings(_Section, frozen=True):
    """The instances' logs in CloudWatch Logs (docs/monitoring.md): one group per role, shipped by AWS's
    CloudWatch agent, installed at first boot like the SSM agent unless the image has it
    (`preinstalled`) or the stack ships no logs (`off`)."""

    agent: Literal["install", "preinstalled", "off"] = "install"
    # The CloudWatch agent release installed at first boot (its bucket's debian/<arch>/<version>/).
    agent_version: AgentVersion = AGENT_VERSIONS[CLOUDWATCH_AGENT_PACKAGE]
    retention_days: LogRetentionDays = 30

    def __post_init__(self) -> None:
        _check_retention("retentionDays", self.retention_days)


# RDS for PostgreSQL: the majors the stack creates (AWS's current ones); the parameter group's
# family follows the major (postgres16, postgres17).
RDS_ENGINE_MAJORS = ("16", "17")
# Instance class families RDS offers PostgreSQL on: burstable, general purpose, memory optimized.
RDS_INSTANCE_FAMILIES = frozenset(
    {
        *("t3", "t4g", "m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m7g", "m7i", "m8g"),
        *("r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r7g", "r7i", "r8g"),
    }
)
# gp3's range for RDS (its minimum is 20 GiB), and RDS's backup retention (0 would turn backups off).
RDS_STORAGE_GB = (20, 65536)
RDS_BACKUP_RETENTION_DAYS = (1, 35)
# What security.protect asks of a database the stack creates: a standby, and a week of backups.
PROTECTED_BACKUP_RETENTION_DAYS = 7
_RDS_ONLY = (
    *("engineVersion", "instanceClass", "allocatedStorageGb", "maxAllocatedStorageGb", "backupRetentionDays"),
    *("multiAz", "name", "username", "caBundleSha256"),
)


class DatabaseSettings(_Section, frozen=True):
    """The app's database (docs/database.md): `none` opens nothing; `existing` is one the user
    runs, its connection in app.secretParameters, and opens exactly the egress from the web and
    worker hosts to where it lives (its security group and/or CIDRs, on its port); `rds` is a
    PostgreSQL the stack creates (components/database.py)."""

    mode: Literal["none", "existing", "rds"] = "none"
    security_group_id: SecurityGroupId | None = None
    cidrs: tuple[Cidr, ...] = ()
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None  # default: DATABASE_PORT
    # The group is the user's to change: it admits the web and worker hosts on the port.
    manage_ingress: bool = False
    # mode rds: None is "not set" (each has a default there, and is refused in the other modes).
    engine_version: (
        Annotated[str, Meta(pattern=_full(r"\d+(\.\d+)?"), description='a PostgreSQL major, e.g. "17" (or "17.4")')]
        | None
    ) = None
    instance_class: (
        Annotated[
            str,
            Meta(pattern=_full(r"db\.[a-z0-9]+\.[a-z0-9]+"), description='an RDS instance class, e.g. "db.t4g.small"'),
        ]
        | None
    ) = None
    allocated_storage_gb: int | None = None
    # Storage autoscaling's ceiling; None: the storage stays at allocatedStorageGb.
    max_allocated_storage_gb: int | None = None
    backup_retention_days: int | None = None
    multi_az: bool | None = None
    name: (
        Annotated[str, Meta(pattern=_full(r"[a-z][a-z0-9_]{0,62}"), description='a database name, e.g. "app"')] | None
    ) = None
    username: (
        Annotated[str, Meta(pattern=_full(r"[a-z][a-z0-9_]{0,15}"), description='a user name, e.g. "django"')] | None
    ) = None
    # The SHA-256 of AWS's RDS CA bundle for the region, which the machines fetch at boot and
    # refuse unless it matches: pinned here, a network attacker cannot swap it (docs/database.md).
    ca_bundle_sha256: (
        Annotated[str, Meta(pattern=_full(r"[0-9a-f]{64}"), description="64 lowercase hex digits (sha256sum)")] | None
    ) = None

    def __post_init__(self) -> None:
        if self.mode != "rds":
            for key in _RDS_ONLY:
                if getattr(self, _snake(key)) is not None:
                    raise _problem(key, f"only with mode 'rds' (a database the stack creates); mode is {self.mode!r}")
        if self.mode == "rds":
            self._check_rds()
            return
        if self.mode == "none":
            self._refuse_existing_keys("with mode 'none' no database is reached")
            return
        if not self.security_group_id and not self.cidrs:
            raise _problem(
                "securityGroupId",
                "missing; mode 'existing' needs where the database lives: securityGroupId and/or cidrs",
            )
        if _cover_everything(_distinct_networks("cidrs", self.cidrs)):
            raise _problem(
                "cidrs",
                f"{', '.join(self.cidrs)} would let the hosts reach any address on port {self.database_port}; "
                "list the database's own network (its subnets' CIDRs) or use securityGroupId",
            )
        if self.manage_ingress and not self.security_group_id:
            raise _problem("manageIngress", "needs securityGroupId: the database's group whose ingress the stack adds")

    def _refuse_existing_keys(self, why: str) -> None:
        for key, value in (
            ("securityGroupId", self.security_group_id),
            ("cidrs", self.cidrs),
            ("port", self.port),
            ("manageIngress", self.manage_ingress),
        ):
            if value:
                raise _problem(key, f"only with mode 'existing'; {why}")

    def _check_rds(self) -> None:
        self._refuse_existing_keys("with mode 'rds' the stack makes the database's group")
        if self.rds_engine_major not in RDS_ENGINE_MAJORS:
            raise _problem(
                "engineVersion",
                f'got {self.engine_version!r}; allowed majors: {", ".join(RDS_ENGINE_MAJORS)} (e.g. "17" or "17.4")',
            )
        family = self.rds_instance_class.split(".")[1]
        if family not in RDS_INSTANCE_FAMILIES:
            raise _problem(
                "instanceClass",
                f"got {self.rds_instance_class!r}; the {family!r} family does not run RDS for PostgreSQL here; "
                f"allowed families: {', '.join(sorted(RDS_INSTANCE_FAMILIES))}",
            )
        low, high = RDS_STORAGE_GB
        if not low <= self.rds_allocated_storage_gb <= high:
            raise _problem("allocatedStorageGb", f"got {self.rds_allocated_storage_gb}; allowed: {low} to {high} (gp3)")
        ceiling = self.max_allocated_storage_gb
        if ceiling is not None and not self.rds_allocated_storage_gb < ceiling <= high:
            raise _problem(
                "maxAllocatedStorageGb",
                f"got {ceiling}; storage autoscaling's ceiling is above allocatedStorageGb "
                f"({self.rds_allocated_storage_gb}) and at most {high}; leave it unset for no autoscaling",
            )
        if self.ca_bundle_sha256 is None:
            raise _problem(
                "caBundleSha256",
                "missing; mode 'rds' pins AWS's RDS CA bundle the machines verify the database with: "
                "curl -s https://truststore.pki.rds.amazonaws.com/<region>/<region>-bundle.pem | sha256sum",
            )
        low, high = RDS_BACKUP_RETENTION_DAYS
        if not low <= self.rds_backup_retention_days <= high:
            raise _problem(
                "backupRetentionDays", f"got {self.rds_backup_retention_days}; allowed: {low} to {high} days"
            )

    @property
    def database_port(self) -> int:
        return self.port or DATABASE_PORT

    # mode rds: the values with their defaults (a small, single-AZ database with a week of backups).
    @property
    def rds_engine_version(self) -> str:
        return self.engine_version or RDS_ENGINE_MAJORS[-1]

    @property
    def rds_engine_major(self) -> str:
        return self.rds_engine_version.split(".")[0]

    @property
    def rds_parameter_family(self) -> str:
        return f"postgres{self.rds_engine_major}"

    @property
    def rds_instance_class(self) -> str:
        return self.instance_class or "db.t4g.small"

    @property
    def rds_allocated_storage_gb(self) -> int:
        return 20 if self.allocated_storage_gb is None else self.allocated_storage_gb

    @property
    def rds_backup_retention_days(self) -> int:
        return PROTECTED_BACKUP_RETENTION_DAYS if self.backup_retention_days is None else self.backup_retention_days

    @property
    def rds_multi_az(self) -> bool:
        return bool(self.multi_az)

    @property
    def rds_name(self) -> str:
        return self.name or "app"

    @property
    def rds_username(self) -> str:
        return self.username or "django"


# PostgreSQL's port: an existing database's unless database.port says otherwise.
DATABASE_PORT = 5432
# Where app.secretParameters carries the connection: the URL, or its secret part (the rest of
# the parts may be plain app.environment values).
DATABASE_SECRET_NAMES = ("DATABASE_URL", "DATABASE_PASSWORD", "PGPASSWORD")


_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+"
EmailAddress = Annotated[
    str, Meta(pattern=_full(_EMAIL), max_length=254, description='an email address, e.g. "ops@example.com"')
]


class AlertsSettings(_Section, frozen=True):
    """Who is told and when: the alarms' thresholds (docs/monitoring.md)."""

    # Subscribed to the stack's alert topics; each confirms by mail before anything reaches it.
    emails: tuple[EmailAddress, ...] = ()
    # noeviction: a full broker refuses new tasks; warn well before.
    broker_memory_percent: Annotated[int, Meta(ge=1, le=100)] = 75
    broker_cpu_percent: Annotated[int, Meta(ge=1, le=100)] = 80
    broker_connections: Annotated[int, Meta(ge=1, le=65000)] = 1000
    replication_lag_seconds: Annotated[int, Meta(ge=1, le=3600)] = 10
    # 5xx answers (the targets' and the load balancer's own) per 100 requests.
    web_error_percent: Annotated[float, Meta(gt=0, le=100)] = 5.0
    web_p99_seconds: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    backlog_threshold: Annotated[int, Meta(ge=1, le=10_000_000)] = 100
    # CloudWatch evaluates an alarm over at most one day of minutes.
    backlog_minutes: Annotated[int, Meta(ge=1, le=1440)] = 10

    def __post_init__(self) -> None:
        lowered = [email.lower() for email in self.emails]
        twice = sorted({email for email in lowered if lowered.count(email) > 1})
        if twice:
            raise _problem("emails", f"{', '.join(twice)} listed twice; list each address once")


# The project's config namespace: one key (`<project>:<key>`) per concern.
SECTIONS: dict[str, type[_Section]] = {
    "network": NetworkSettings,
    "redis": RedisSettings,
    "app": AppSettings,
    "instances": InstanceSettings,
    "web": WebSettings,
    "worker": WorkerSettings,
    "loadBalancer": LoadBalancerSettings,
    "security": SecuritySettings,
    "logs": LogSettings,
    "alerts": AlertsSettings,
    "database": DatabaseSettings,
}


class Settings(msgspec.Struct, frozen=True):
    project: str
    stack: str
    region: str
    network: NetworkSettings
    redis: RedisSettings
    app: AppSettings
    instances: InstanceSettings
    web: WebSettings
    worker: WorkerSettings
    load_balancer: LoadBalancerSettings
    security: SecuritySettings
    logs: LogSettings
    alerts: AlertsSettings
    database: DatabaseSettings

    def parameter_name(self, purpose: str) -> str:
        return parameter_name(self.project, self.stack, purpose)
