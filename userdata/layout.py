"""The machine contract: every path, unit, env variable, tag and parameter name that the program
puts on an instance and that the ops tool, the end-to-end harness and the VM probe rely on.

Defined here once and imported by all of them; docs/machine-layout.md is tested against it.
Standard library only: the VM image carries a copy of this file for the probe inside the guest.
"""

from __future__ import annotations

# --- users and paths -----------------------------------------------------------------------------

USER = GROUP = "app"
APP_ROOT = "/srv/app"
RELEASES_DIR = f"{APP_ROOT}/releases"
APP_CURRENT = f"{APP_ROOT}/current"
APP_SRC = f"{APP_CURRENT}/src"
APP_BIN = f"{APP_CURRENT}/venv/bin"
# The running release's collectstatic output (the artifact's static/): DJANGO_STATIC_ROOT.
APP_STATIC = f"{APP_CURRENT}/static"
# Every installed release's hashed static files, kept by app-release so an instance still on one
# release answers the other's assets during a rolling deploy: DJANGO_STATIC_BRIDGE_ROOT.
STATIC_BRIDGE_DIR = f"{APP_ROOT}/static"
ETC_DIR = "/etc/app"
APP_ENV = f"{ETC_DIR}/app.env"
GUNICORN_ENV = f"{ETC_DIR}/gunicorn.env"
SECRETS_SOURCE_ENV = f"{ETC_DIR}/secrets-source.env"
RELEASE_ENV = f"{ETC_DIR}/release.env"
# app.releaseCommand and where its lock and done records live in the broker (docs/release-command.md).
RELEASE_COMMAND_ENV = f"{ETC_DIR}/release-command.env"
# Written by app-release into each release it installs: APP_RELEASE=<that release>. Read through
# `current` when a unit starts, so a process always reports the release whose code it runs.
VERSION_ENV = f"{APP_CURRENT}/version.env"
# One env file per queue: /etc/app/worker-<queue>.env. The ops scripts find a machine's queues
# by listing these files, so the prefix and suffix are part of the contract.
WORKER_ENV_PREFIX = f"{ETC_DIR}/worker-"
WORKER_ENV_SUFFIX = ".env"
SECRETS_DIR_NAME = "app-secrets"  # RuntimeDirectory= of app-secrets.service
SECRETS_DIR = f"/run/{SECRETS_DIR_NAME}"
SECRETS_ENV = f"{SECRETS_DIR}/secrets.env"
# What app-fetch-secrets writes there, beside the names of the app's own app.secretParameters.
SECRETS_ENV_NAMES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DJANGO_SECRET_KEY")
GUNICORN_RUNTIME_DIR_NAME = "gunicorn"  # RuntimeDirectory= of gunicorn.service
GUNICORN_RUNTIME_DIR = f"/run/{GUNICORN_RUNTIME_DIR_NAME}"
BEAT_STATE_DIR_NAME = "celery-beat"  # StateDirectory= of celery-beat.service
BEAT_STATE_DIR = f"/var/lib/{BEAT_STATE_DIR_NAME}"
BEAT_SCHEDULE = f"{BEAT_STATE_DIR}/schedule"
SBIN_DIR = "/usr/local/sbin"
FETCH_SECRETS_BIN = f"{SBIN_DIR}/app-fetch-secrets"
# database.mode rds only: app-database-password.service (the app user, at boot and every minute
# by its timer) writes AWS's RDS CA bundle for the region (fetched once, checked against the pinned
# digest) and libpq's password file into its RuntimeDirectory; DATABASE_URL (app.env) names both.
DATABASE_PASSWORD_BIN = f"{SBIN_DIR}/app-database-password"
DATABASE_DIR_NAME = "app-database"  # RuntimeDirectory= of app-database-password.service
DATABASE_DIR = f"/run/{DATABASE_DIR_NAME}"
DATABASE_CA_FILE = f"{DATABASE_DIR}/rds-ca.pem"
DATABASE_PASSFILE = f"{DATABASE_DIR}/pgpass"


RELEASE_BIN = f"{SBIN_DIR}/app-release"
# Inside each release artifact, written by `python -m ops build-release` and checked by app-release
# before anything is installed: release, architecture, python, app module, each wheel's sha256.
RELEASE_MANIFEST = "manifest.json"
# The stack's instances.architecture -> the instance's `uname -m` (platform.machine()), which is
# also the architecture in manylinux wheel tags.
RELEASE_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# Debian 12's python3 (major.minor): what every release's venv is built with.
RELEASE_PYTHON = "3.11"
RELEASE_COMMAND_BIN = f"{SBIN_DIR}/app-release-command"
# Installs one of AWS's agents after checking its package's signature against AGENT_KEYRING.
AGENT_INSTALLER_BIN = f"{SBIN_DIR}/install-aws-agent"
AGENT_KEYRING = f"{ETC_DIR}/aws-agent-keys.asc"
SSM_AGENT_PACKAGE = "amazon-ssm-agent"
CLOUDWATCH_AGENT_PACKAGE = "amazon-cloudwatch-agent"
# An agent release as AWS's buckets name its directory: 3.3.4851.0 (SSM), 1.300040.0b650
# (CloudWatch). install-aws-agent checks the same rule (VERSION_PATTERN).
AGENT_VERSION_PATTERN = r"[0-9]+(\.[0-9A-Za-z]+)+"
# The releases a stack installs unless its config names others (instances.ssmAgentVersion,
# logs.agentVersion): each with a package signed by the key in userdata/keys/.
AGENT_VERSIONS = {SSM_AGENT_PACKAGE: "3.3.4851.0", CLOUDWATCH_AGENT_PACKAGE: "1.300040.0b650"}
# What the CloudWatch agent ships where (userdata.render.cloudwatch_agent_config).
CLOUDWATCH_AGENT_CONFIG = f"{ETC_DIR}/cloudwatch-agent.json"
WARM_STOP_BIN = f"{SBIN_DIR}/app-warm-stop"
BOOT_FAILED_BIN = f"{SBIN_DIR}/app-boot-failed"
QUEUE_METRICS_BIN = f"{SBIN_DIR}/app-queue-metrics"
UNIT_DIR = "/etc/systemd/system"
# The machine scripts run with Debian's own interpreter and python3-boto3, never the app's venv.
SYSTEM_PYTHON = "/usr/bin/python3"

# Directories whose content differs from machine to machine (the releases under APP_ROOT are
# the same everywhere): what a harness simulating several machines on one host keeps apart.
PER_MACHINE_DIRS = (ETC_DIR, SECRETS_DIR, DATABASE_DIR, GUNICORN_RUNTIME_DIR, BEAT_STATE_DIR, SBIN_DIR, UNIT_DIR)

# --- units ---------------------------------------------------------------------------------------

# How the user-data starts the stack's units (its first runcmd): without waiting for them, so the
# release install and the secrets fetch run while the agents install (`enable` reloads systemd
# itself). What reads the user-data (the probe, the tests) finds the units after this prefix.
ENABLE_UNITS = ("systemctl", "enable", "--now", "--no-block")

SECRETS_UNIT = "app-secrets.service"
RELEASE_UNIT = "app-release.service"
# Runs app.releaseCommand for the current release once across the stack (a lock in the broker).
RELEASE_COMMAND_UNIT = "app-release-command.service"
GUNICORN_UNIT = "gunicorn.service"
# Gunicorn's own graceful timeout is 30 s after the request timeout: its unit's stop timeout, the
# load balancer's deregistration delay and the config's limit on web.gunicornTimeout add it.
GUNICORN_GRACE_SECONDS = 30
BEAT_UNIT = "celery-beat.service"
# Workers only: holds an Auto Scaling termination until the Celery units have stopped warm.
WARM_STOP_UNIT = "app-warm-stop.service"
# The Beat instance only: publishes the queue backlog and Beat's heartbeat (the metrics below).
QUEUE_METRICS_UNIT = "app-queue-metrics.service"
QUEUE_METRICS_TIMER = "app-queue-metrics.timer"  # what the user-data enables: every minute
# database.mode rds only: the password file's writer and its timer (every minute).
DATABASE_PASSWORD_UNIT = "app-database-password.service"
DATABASE_PASSWORD_TIMER = "app-database-password.timer"
WORKER_UNIT_PREFIX = "celery-worker-"
WORKER_UNIT_SUFFIX = ".service"
# Every machine runs these first; the role's long-running units require them all.
ONESHOT_UNITS = (SECRETS_UNIT, RELEASE_UNIT, RELEASE_COMMAND_UNIT)
# A template unit, started by OnFailure= of the secrets and release units with the failed unit's
# name (without .service) as its instance: reports the instance unhealthy to Auto Scaling.
BOOT_FAILED_UNIT = "app-boot-failed@.service"
BOOT_FAILED_ON_FAILURE = "app-boot-failed@%N.service"


def worker_unit(queue: str) -> str:
    return f"{WORKER_UNIT_PREFIX}{queue}{WORKER_UNIT_SUFFIX}"


def worker_env_file(queue: str) -> str:
    return f"{WORKER_ENV_PREFIX}{queue}{WORKER_ENV_SUFFIX}"


def queue_of_worker_unit(unit: str) -> str | None:
    """`default` for celery-worker-default.service; None for any other unit."""
    if unit.startswith(WORKER_UNIT_PREFIX) and unit.endswith(WORKER_UNIT_SUFFIX):
        return unit.removeprefix(WORKER_UNIT_PREFIX).removesuffix(WORKER_UNIT_SUFFIX)
    return None


def is_app_unit(unit: str) -> bool:
    """The long-running units that serve the app (gunicorn, a Celery worker, Beat)."""
    return unit in (GUNICORN_UNIT, BEAT_UNIT) or queue_of_worker_unit(unit) is not None


# --- names ---------------------------------------------------------------------------------------

# The Pulumi project this program ships as (Pulumi.yaml's name). Its stacks were created before
# names carried the project, and keep the names they have: renaming one replaces the resource.
ORIGINAL_PROJECT = "django-stack"


def database_identifier(project: str, stack: str) -> str:
    """The RDS instance of a database.mode rds stack: its name in AWS, its host name's first label."""
    return f"{resource_prefix(project, stack)}-postgres"


def resource_prefix(project: str, stack: str) -> str:
    """What the stack's resource names (Pulumi's and AWS's) start with: `<project>-<stack>`, so two
    projects' `prod` stacks coexist in one account; the stack alone for ORIGINAL_PROJECT."""
    return stack if project == ORIGINAL_PROJECT else f"{project}-{stack}"


# --- tags ----------------------------------------------------------------------------------------

STACK_TAG = "Stack"
PROJECT_TAG = "Project"
ROLE_TAG = "Role"
NAME_TAG = "Name"
WEB_ROLE, WORKER_ROLE = "web", "worker"
ROLES = (WEB_ROLE, WORKER_ROLE)
# The Auto Scaling termination hook on the worker groups, completed by the worker's agent.
TERMINATION_HOOK = "celery-warm-stop"
# On exactly one worker when Beat is enabled, absent everywhere else.
BEAT_TAG = "celery-beat"
BEAT_TAG_VALUE = "true"

# --- CloudWatch Logs ------------------------------------------------------------------------------

SSM_AGENT_UNIT = "amazon-ssm-agent.service"
CLOUDWATCH_AGENT_UNIT = "amazon-cloudwatch-agent.service"  # the agent's package installs it
# Files the CloudWatch agent ships besides the units' journal: cloud-init's two logs and the SSM
# agent's own log (it writes its detail there, not to the journal).
SHIPPED_LOG_FILES = (
    "/var/log/cloud-init.log",
    "/var/log/cloud-init-output.log",
    "/var/log/amazon/ssm/amazon-ssm-agent.log",
)


def log_group_name(project: str, stack: str, role: str) -> str:
    """One group per stack and role; each instance writes one stream per unit or file."""
    return f"/{project}/{stack}/{role}"


def log_stream_name(source: str) -> str:
    """`{instance_id}/gunicorn.service`, `{instance_id}/cloud-init-output.log`: the agent fills in
    the instance id, so `aws logs tail GROUP --log-stream-name-prefix i-0abc` reads one instance."""
    return "{instance_id}/" + source.rsplit("/", 1)[-1]


# --- Parameter Store -----------------------------------------------------------------------------

AUTH_TOKEN_PARAMETER = "redis/auth-token"
# A new token waits here until ElastiCache has taken it (the deploy role reads it, no instance).
AUTH_TOKEN_NEXT_PARAMETER = "redis/auth-token-next"
DJANGO_SECRET_KEY_PARAMETER = "django/secret-key"
# The parameters the instance role may read (ssm:GetParameters), nothing else.
INSTANCE_PARAMETERS = (AUTH_TOKEN_PARAMETER, DJANGO_SECRET_KEY_PARAMETER)
INSTANCE_PARAMETER_ACTION = "ssm:GetParameters"
# The live release (String): seeded by the program from app.release, written by the ops tool after
# each deploy/rollback, read by app-release at boot. The instance role may ssm:GetParameter on it.
RELEASE_PARAMETER = "release"
# Its value: RELEASE@sha256:HEX, the release and its artifact's SHA-256, so app-release installs
# that artifact only, whatever lies beside it in the bucket (docs/release-digest.md).
RELEASE_DIGEST_SEPARATOR = "@sha256:"
RELEASE_PARAMETER_ACTION = "ssm:GetParameter"


# An AWS region name (full match): the stack's aws:region, and the ops tool's --region, outputs'
# region and AWS_REGION, so both refuse the same values.
REGION_PATTERN = r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d"


# Region prefix -> the partition its ARNs name (arn:<partition>:...); every other region is "aws".
PARTITIONS = (("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"), ("us-iso-", "aws-iso"))


def partition(region: str) -> str:
    return next((name for prefix, name in PARTITIONS if region.startswith(prefix)), "aws")


def parameter_name(project: str, stack: str, purpose: str) -> str:
    """One tree per stack, so IAM can grant exactly a stack's parameters."""
    return f"/{project}/{stack}/{purpose}"


# --- the release command's records in the broker (Redis db of CELERY_BROKER_URL) ----------------

RELEASE_COMMAND_KEYS = "app:release-command:"


def release_command_key(release: str, record: str) -> str:
    """`lock` (SET NX with an expiry, refreshed while the command runs) or `done` (set once it
    succeeded, never expires) for one release; app-release-command builds the same names."""
    return f"{RELEASE_COMMAND_KEYS}{release}:{record}"


# --- CloudWatch metrics the Beat instance publishes ------------------------------------------------

# Published once a minute by the Beat instance (it exists exactly once), read by the alarms, the
# dashboard and the worker groups' scaling policy. Only the Beat instances' role may PutMetricData,
# and only into its own stack's namespace (condition cloudwatch:namespace): PutMetricData has no
# resource ARN and a dimension cannot be conditioned on, so one namespace per stack is what keeps
# a staging Beat from writing prod's backlog (scaling prod) or heartbeat (silencing its alarm).
METRICS_NAMESPACE_ROOT = "DjangoStack/Celery"


def metrics_namespace(project: str, stack: str) -> str:
    return f"{METRICS_NAMESPACE_ROOT}/{project}/{stack}"


QUEUE_BACKLOG_METRIC = "QueueBacklog"  # messages waiting in one queue (all priorities), Count
BEAT_HEARTBEAT_METRIC = "BeatHeartbeat"  # 1 while Beat is alive by the ops tool's definition
STACK_DIMENSION = "Stack"
QUEUE_DIMENSION = "Queue"


# --- environment variables, per file -------------------------------------------------------------

APP_ENV_VARIABLES = (
    "DJANGO_SETTINGS_MODULE",
    "CELERY_APP",
    "DJANGO_ALLOWED_HOSTS",
    # Only with the stack's load balancer (userdata.render.behind_load_balancer_env).
    "DJANGO_SECURE_PROXY_SSL_HEADER",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DJANGO_STATIC_ROOT",
    "DJANGO_STATIC_BRIDGE_ROOT",
    "CELERY_TASK_DEFAULT_QUEUE",
    "CELERY_TASK_ROUTES",
    "CELERY_TASK_SOFT_TIME_LIMIT",
    "CELERY_TASK_TIME_LIMIT",
    "CELERY_VISIBILITY_TIMEOUT",
    "CELERY_RESULT_EXPIRES",
    # database.mode rds only: no password in it (passfile=DATABASE_PASSFILE).
    "DATABASE_URL",
)
WORKER_ENV_VARIABLES = ("CELERY_QUEUE", "CELERY_CONCURRENCY", "CELERY_SOFT_TIME_LIMIT", "CELERY_HARD_TIME_LIMIT")
GUNICORN_ENV_VARIABLES = ("GUNICORN_BIND", "GUNICORN_WORKERS", "GUNICORN_TIMEOUT", "DJANGO_WSGI_APP")
SECRETS_ENV_VARIABLES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DJANGO_SECRET_KEY")
SECRETS_SOURCE_VARIABLES = (
    "AWS_REGION",
    "AUTH_TOKEN_PARAMETER",
    "DJANGO_SECRET_KEY_PARAMETER",
    "REDIS_HOST",
    "REDIS_PORT",
    "BROKER_DB",
    "RESULT_DB",
    "SECRETS_ENV_FILE",
    "REDIS_CA_FILE",
    *("DATABASE_SECRET", "DATABASE_CA_SHA256"),
)
RELEASE_VARIABLES = ("RELEASE_PARAMETER", "AWS_REGION", "ARTIFACT_BUCKET", "ARTIFACT_PREFIX")
VERSION_ENV_VARIABLES = ("APP_RELEASE",)
RELEASE_COMMAND_VARIABLES = ("RELEASE_COMMAND", "RELEASE_COMMAND_KEYS")
# What every app unit needs set to start at all (ops verify's env_file check).
REQUIRED_APP_VARIABLES = (
    "DJANGO_SETTINGS_MODULE",
    "CELERY_APP",
    "APP_RELEASE",
    "CELERY_BROKER_URL",
    "DJANGO_SECRET_KEY",
)

# Env file (a worker file stands for every queue's) -> the variables it may set.
ENV_FILE_VARIABLES = {
    APP_ENV: APP_ENV_VARIABLES,
    VERSION_ENV: VERSION_ENV_VARIABLES,
    worker_env_file("<queue>"): WORKER_ENV_VARIABLES,
    GUNICORN_ENV: GUNICORN_ENV_VARIABLES,
    SECRETS_ENV: SECRETS_ENV_VARIABLES,
    SECRETS_SOURCE_ENV: SECRETS_SOURCE_VARIABLES,
    RELEASE_ENV: RELEASE_VARIABLES,
    RELEASE_COMMAND_ENV: RELEASE_COMMAND_VARIABLES,
}


def env_file_variables(path: str) -> tuple[str, ...] | None:
    """The variables the contract allows in this env file; None if it names no such file."""
    if path.startswith(WORKER_ENV_PREFIX) and path.endswith(WORKER_ENV_SUFFIX):
        return WORKER_ENV_VARIABLES
    return ENV_FILE_VARIABLES.get(path)
