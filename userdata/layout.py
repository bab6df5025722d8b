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
RELEASE_BIN = f"{SBIN_DIR}/app-release"
# Installs one of AWS's agents after checking its package's signature against AGENT_KEYRING.
AGENT_INSTALLER_BIN = f"{SBIN_DIR}/install-aws-agent"
AGENT_KEYRING = f"{ETC_DIR}/aws-agent-keys.asc"
SSM_AGENT_PACKAGE = "amazon-ssm-agent"
CLOUDWATCH_AGENT_PACKAGE = "amazon-cloudwatch-agent"
# What the CloudWatch agent ships where (userdata.render.cloudwatch_agent_config).
CLOUDWATCH_AGENT_CONFIG = f"{ETC_DIR}/cloudwatch-agent.json"
WARM_STOP_BIN = f"{SBIN_DIR}/app-warm-stop"
QUEUE_METRICS_BIN = f"{SBIN_DIR}/app-queue-metrics"
UNIT_DIR = "/etc/systemd/system"
# The machine scripts run with Debian's own interpreter and python3-boto3, never the app's venv.
SYSTEM_PYTHON = "/usr/bin/python3"

# Directories whose content differs from machine to machine (the releases under APP_ROOT are
# the same everywhere): what a harness simulating several machines on one host keeps apart.
PER_MACHINE_DIRS = (ETC_DIR, SECRETS_DIR, GUNICORN_RUNTIME_DIR, BEAT_STATE_DIR, SBIN_DIR, UNIT_DIR)

# --- units ---------------------------------------------------------------------------------------

SECRETS_UNIT = "app-secrets.service"
RELEASE_UNIT = "app-release.service"
GUNICORN_UNIT = "gunicorn.service"
BEAT_UNIT = "celery-beat.service"
# Workers only: holds an Auto Scaling termination until the Celery units have stopped warm.
WARM_STOP_UNIT = "app-warm-stop.service"
# The Beat instance only: publishes the queue backlog and Beat's heartbeat (the metrics below).
QUEUE_METRICS_UNIT = "app-queue-metrics.service"
QUEUE_METRICS_TIMER = "app-queue-metrics.timer"  # what the user-data enables: every minute
WORKER_UNIT_PREFIX = "celery-worker-"
WORKER_UNIT_SUFFIX = ".service"
# Every machine runs these two first; the role's long-running units require both.
ONESHOT_UNITS = (SECRETS_UNIT, RELEASE_UNIT)


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
DJANGO_SECRET_KEY_PARAMETER = "django/secret-key"
# The parameters the instance role may read (ssm:GetParameters), nothing else.
INSTANCE_PARAMETERS = (AUTH_TOKEN_PARAMETER, DJANGO_SECRET_KEY_PARAMETER)
INSTANCE_PARAMETER_ACTION = "ssm:GetParameters"
# The live release (String): seeded by the program from app.release, written by the ops tool after
# each deploy/rollback, read by app-release at boot. The instance role may ssm:GetParameter on it.
RELEASE_PARAMETER = "release"
RELEASE_PARAMETER_ACTION = "ssm:GetParameter"


# An AWS region name (full match): the stack's aws:region, and the ops tool's --region, outputs'
# region and AWS_REGION, so both refuse the same values.
REGION_PATTERN = r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d"


def parameter_name(project: str, stack: str, purpose: str) -> str:
    """One tree per stack, so IAM can grant exactly a stack's parameters."""
    return f"/{project}/{stack}/{purpose}"


# --- CloudWatch metrics the Beat instance publishes ------------------------------------------------

# Published once a minute by the Beat instance (it exists exactly once), read by the alarms, the
# dashboard and the worker groups' scaling policy. Only the Beat instances' role may PutMetricData,
# and only here (condition cloudwatch:namespace).
METRICS_NAMESPACE = "DjangoStack/Celery"
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
)
RELEASE_VARIABLES = ("RELEASE_PARAMETER", "AWS_REGION", "ARTIFACT_BUCKET", "ARTIFACT_PREFIX")
VERSION_ENV_VARIABLES = ("APP_RELEASE",)
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
}


def env_file_variables(path: str) -> tuple[str, ...] | None:
    """The variables the contract allows in this env file; None if it names no such file."""
    if path.startswith(WORKER_ENV_PREFIX) and path.endswith(WORKER_ENV_SUFFIX):
        return WORKER_ENV_VARIABLES
    return ENV_FILE_VARIABLES.get(path)
