"""Renders what goes onto an instance: systemd units, env files, scripts, and the cloud-config
that delivers them. Pure functions of the settings, the role and the Redis endpoint, so every
byte an instance receives can be tested and diffed without Pulumi or AWS.

Every name and path comes from the machine contract, userdata/layout.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from config import QueueSettings, Settings
from config.kinds import MachineKind, Role
from userdata.layout import (
    AGENT_INSTALLER_BIN,
    AGENT_KEYRING,
    APP_CURRENT,
    APP_ENV,
    APP_ROOT,
    APP_STATIC,
    AUTH_TOKEN_PARAMETER,
    BEAT_HEARTBEAT_METRIC,
    BEAT_SCHEDULE,
    BEAT_STATE_DIR_NAME,
    BEAT_UNIT,
    BOOT_FAILED_BIN,
    BOOT_FAILED_ON_FAILURE,
    BOOT_FAILED_UNIT,
    CLOUDWATCH_AGENT_CONFIG,
    CLOUDWATCH_AGENT_PACKAGE,
    DATABASE_CA_FILE,
    DATABASE_DIR_NAME,
    DATABASE_PASSFILE,
    DATABASE_PASSWORD_BIN,
    DATABASE_PASSWORD_TIMER,
    DATABASE_PASSWORD_UNIT,
    DJANGO_SECRET_KEY_PARAMETER,
    ENABLE_UNITS,
    FETCH_SECRETS_BIN,
    GROUP,
    GUNICORN_ENV,
    GUNICORN_GRACE_SECONDS,
    GUNICORN_RUNTIME_DIR,
    GUNICORN_RUNTIME_DIR_NAME,
    GUNICORN_UNIT,
    QUEUE_BACKLOG_METRIC,
    QUEUE_DIMENSION,
    QUEUE_METRICS_BIN,
    QUEUE_METRICS_TIMER,
    QUEUE_METRICS_UNIT,
    RELEASE_BIN,
    RELEASE_COMMAND_BIN,
    RELEASE_COMMAND_ENV,
    RELEASE_COMMAND_KEYS,
    RELEASE_COMMAND_UNIT,
    RELEASE_ENV,
    RELEASE_PARAMETER,
    RELEASE_UNIT,
    RELEASES_DIR,
    SECRETS_DIR_NAME,
    SECRETS_ENV,
    SECRETS_ENV_NAMES,
    SECRETS_SOURCE_ENV,
    SECRETS_UNIT,
    SHIPPED_LOG_FILES,
    SSM_AGENT_PACKAGE,
    SSM_AGENT_UNIT,
    STACK_DIMENSION,
    STATIC_BRIDGE_DIR,
    TERMINATION_HOOK,
    UNIT_DIR,
    USER,
    VERSION_ENV,
    VERSION_ENV_VARIABLES,
    WARM_STOP_BIN,
    WARM_STOP_UNIT,
    log_group_name,
    log_stream_name,
    metrics_namespace,
    resource_prefix,
    worker_env_file,
    worker_unit,
)
from userdata.shipped import shipped_script
from userdata.template import StrictTemplate


class SettingError(ValueError):
    """A value that passed its section's rules but cannot go onto a machine (found while
    rendering); `key` is the config key, as in `app.environment.NAME`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


BROKER_DB, RESULT_DB = 0, 1
# What the units and scripts need from Debian beyond a stock cloud image (gpgv is on it already,
# as apt's own verifier: listed because install-aws-agent depends on it).
PACKAGES = ("python3-boto3", "python3-venv", "redis-tools", "gpgv")

_HERE = Path(__file__).parent
# The public keys AWS signs its agent packages with: the armored blocks only (provenance and
# fingerprints are in the file's text before them, which the user-data has no room for).
_KEYRING_FILE = (_HERE / "keys" / "aws-agent-keys.asc").read_text()
AWS_AGENT_KEYRING = _KEYRING_FILE[_KEYRING_FILE.index("-----BEGIN PGP") :]


@dataclass(frozen=True)
class DatabaseEndpoint:
    """The stack's RDS PostgreSQL (database.mode rds), as the program knows it once it exists;
    it listens on PostgreSQL's own port."""

    host: str
    secret_arn: str


@dataclass(frozen=True)
class UserDataInputs:
    """Everything one kind of machine's user-data depends on (config/kinds.py: web, worker, the
    worker with Beat, any other kind the settings add)."""

    settings: Settings
    kind: MachineKind
    redis_host: str
    redis_port: int
    database: DatabaseEndpoint | None = None

    @property
    def role(self) -> Role:
        return self.kind.role

    @property
    def runs_beat(self) -> bool:
        return self.kind.runs_beat

    @property
    def queues(self) -> list[QueueSettings]:
        """The queues this kind's workers consume, in the settings' order."""
        return [queue for queue in self.settings.worker.queues if queue.name in self.kind.queues]


@dataclass(frozen=True)
class WrittenFile:
    path: str
    content: str
    owner: str
    permissions: str
    defer: bool = False


def app_units(machine: UserDataInputs) -> list[str]:
    """The long-running units of this machine's role, in start order."""
    if machine.role == "web":
        return [GUNICORN_UNIT]
    units = [worker_unit(queue.name) for queue in machine.queues]
    return units + [BEAT_UNIT] if machine.runs_beat else units


def units_to_enable(machine: UserDataInputs) -> list[str]:
    agent = [WARM_STOP_UNIT] if machine.role == "worker" else []
    metrics = [QUEUE_METRICS_TIMER] if machine.runs_beat else []
    # The service too: enabling it is what makes app-secrets.service require it (its [Install]).
    database = [DATABASE_PASSWORD_UNIT, DATABASE_PASSWORD_TIMER] if machine.database else []
    return [*database, RELEASE_UNIT, SECRETS_UNIT, RELEASE_COMMAND_UNIT, *app_units(machine), *agent, *metrics]


# --- environment files ---------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_./:@,+=-]*")


def render_env(values: dict[str, str | int]) -> str:
    """KEY=value lines that systemd's EnvironmentFile= and a POSIX shell (`set -a; . file`)
    read the same way: plain values bare, anything else in single quotes."""
    lines = []
    for key, raw in values.items():
        value = str(raw)
        if "'" in value or "\n" in value:
            raise ValueError(f"{key}: value contains a quote or newline")
        lines.append(f"{key}={value}" if _BARE.fullmatch(value) else f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def app_env(settings: Settings, database: DatabaseEndpoint | None = None) -> dict[str, str | int]:
    """The stack's variables, then the app's own `app.environment`."""
    stack = _stack_app_env(settings) | database_app_env(settings, database)
    ours = {
        *stack,
        *gunicorn_env(settings),
        *worker_env(settings.worker.default_queue),
        *SECRETS_ENV_NAMES,
        *VERSION_ENV_VARIABLES,
    }
    for key, names in (("environment", settings.app.environment), ("secretParameters", settings.app.secret_parameters)):
        for name in sorted(ours & set(names)):
            raise SettingError(f"app.{key}.{name}", "the stack sets this variable itself; choose another name")
    return stack | {name: str(value) for name, value in settings.app.environment.items()}


def _stack_app_env(settings: Settings) -> dict[str, str | int]:
    app, worker = settings.app, settings.worker
    routes = {route: {"queue": queue.name} for queue in worker.queues for route in queue.routes}
    return {
        "DJANGO_SETTINGS_MODULE": app.django_settings_module,
        "CELERY_APP": app.module,
        "DJANGO_ALLOWED_HOSTS": ",".join(allowed_hosts(settings)),
        **behind_load_balancer_env(settings),
        "DJANGO_STATIC_ROOT": APP_STATIC,
        "DJANGO_STATIC_BRIDGE_ROOT": STATIC_BRIDGE_DIR,
        "CELERY_TASK_DEFAULT_QUEUE": worker.default_queue.name,
        "CELERY_TASK_ROUTES": json.dumps(routes, separators=(",", ":"), sort_keys=True),
        "CELERY_TASK_SOFT_TIME_LIMIT": worker.default_queue.soft_time_limit,
        "CELERY_TASK_TIME_LIMIT": worker.default_queue.hard_time_limit,
        "CELERY_VISIBILITY_TIMEOUT": worker.broker_visibility_timeout,
        "CELERY_RESULT_EXPIRES": app.result_expires,
    }


def allowed_hosts(settings: Settings) -> list[str]:
    """app.allowedHosts, and the load balancer's domain: the name its certificate and alias serve."""
    hosts = list(settings.app.allowed_hosts)
    domain = settings.load_balancer.domain if settings.load_balancer.enabled else None
    return hosts + [domain] if domain and domain not in hosts else hosts


def behind_load_balancer_env(settings: Settings) -> dict[str, str | int]:
    """What Django needs to trust the stack's ALB (docs/django-settings.md). It ends TLS and sets
    X-Forwarded-Proto itself, and by the security groups it is the only peer that reaches gunicorn
    (web.ingress* are refused beside it): the header is trusted only then. A load balancer of your
    own is not known to the stack, so its header is not trusted for you."""
    load_balancer = settings.load_balancer
    if not load_balancer.enabled:
        return {}
    env: dict[str, str | int] = {"DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https"}
    if load_balancer.domain:
        env["DJANGO_CSRF_TRUSTED_ORIGINS"] = f"https://{load_balancer.domain}"
    return env


def worker_env(queue: QueueSettings) -> dict[str, str | int]:
    return {
        "CELERY_QUEUE": queue.name,
        "CELERY_CONCURRENCY": queue.concurrency,
        "CELERY_SOFT_TIME_LIMIT": queue.soft_time_limit,
        "CELERY_HARD_TIME_LIMIT": queue.hard_time_limit,
    }


def gunicorn_env(settings: Settings) -> dict[str, str | int]:
    web = settings.web
    return {
        "GUNICORN_BIND": f"0.0.0.0:{web.port}",
        "GUNICORN_WORKERS": web.gunicorn_workers,
        "GUNICORN_TIMEOUT": web.gunicorn_timeout,
        "DJANGO_WSGI_APP": settings.app.wsgi_application,
    }


def secrets_source_env(machine: UserDataInputs) -> dict[str, str | int]:
    settings = machine.settings
    values: dict[str, str | int] = {
        "AWS_REGION": settings.region,
        "AUTH_TOKEN_PARAMETER": settings.parameter_name(AUTH_TOKEN_PARAMETER),
        "DJANGO_SECRET_KEY_PARAMETER": settings.parameter_name(DJANGO_SECRET_KEY_PARAMETER),
        "REDIS_HOST": machine.redis_host,
        "REDIS_PORT": machine.redis_port,
        "BROKER_DB": BROKER_DB,
        "RESULT_DB": RESULT_DB if settings.app.result_backend else "",
        "SECRETS_ENV_FILE": SECRETS_ENV,
    }
    if settings.redis.ca_cert_file:
        values["REDIS_CA_FILE"] = settings.redis.ca_cert_file
    if settings.app.secret_parameters:
        # NAME=/parameter pairs; both sides are restricted to characters that need no quoting.
        values["SECRET_PARAMETERS"] = ",".join(f"{k}={v}" for k, v in sorted(settings.app.secret_parameters.items()))
    return values | database_source_env(machine)


def database_source_env(machine: UserDataInputs) -> dict[str, str | int]:
    """app-database-password's input (database.mode rds): its secret's name and the CA bundle's
    digest. The password never: it stays in Secrets Manager."""
    database, settings = machine.database, machine.settings.database
    if database is None:
        return {}
    return {
        # Its name (rds!db-<id>) is enough for Secrets Manager: the ARN only adds what the
        # machine knows (region, account) and a random suffix.
        "DATABASE_SECRET": database.secret_arn.split(":secret:", 1)[1][: -len("-AbCdEf")],
        "DATABASE_CA_SHA256": settings.ca_bundle_sha256 or "",
    }


def database_app_env(settings: Settings, database: DatabaseEndpoint | None) -> dict[str, str | int]:
    """DATABASE_URL of a database.mode rds stack, with nothing secret in it: libpq reads the
    password from the file app-database-password keeps current (passfile=) at each new connection,
    and checks the server against AWS's CA bundle beside it. No port: RDS listens on PostgreSQL's
    own (components/database.py), libpq's default."""
    if database is None:
        return {}
    rds = settings.database
    return {
        "DATABASE_URL": f"postgres://{quote(rds.rds_username, safe='')}@{database.host}/{rds.rds_name}"
        f"?sslmode=verify-full&sslrootcert={DATABASE_CA_FILE}&passfile={DATABASE_PASSFILE}"
    }


def release_env(settings: Settings) -> dict[str, str | int]:
    """app-release's input. No release name: the live one is read from the parameter at boot
    (app.release only seeds it), so a deploy never leaves new instances booting an old release."""
    app = settings.app
    values: dict[str, str | int] = {
        "RELEASE_PARAMETER": settings.parameter_name(RELEASE_PARAMETER),
        "AWS_REGION": settings.region,
    }
    if app.source == "s3" and app.artifact_bucket:
        values |= {"ARTIFACT_BUCKET": app.artifact_bucket, "ARTIFACT_PREFIX": app.artifact_prefix}
    return values


def release_command_env(settings: Settings) -> dict[str, str | int]:
    """app-release-command's input: what to run, and the prefix of its broker keys."""
    return {"RELEASE_COMMAND": settings.app.release_command, "RELEASE_COMMAND_KEYS": RELEASE_COMMAND_KEYS}


# --- units -------------------------------------------------------------------------------------


@cache
def _template(name: str) -> StrictTemplate:
    """The template without its comment lines: they explain the unit here, in the repository, and
    would take a twelfth of the 16 KiB user-data on the machine."""
    lines = (_HERE / "templates" / name).read_text().splitlines(keepends=True)
    return StrictTemplate("".join(line for line in lines if not line.lstrip().startswith(("#", ";"))))


def _render_unit(template: str, **values: Any) -> str:
    return _template(template).substitute(
        sandbox=_template("sandbox.conf").template,
        user=USER,
        group=GROUP,
        app_current=APP_CURRENT,
        app_env=APP_ENV,
        version_env=VERSION_ENV,
        secrets_env=SECRETS_ENV,
        **values,
    )


# The longest a failed boot waits for the CloudWatch agent (installed beside the units) before it
# reports the instance unhealthy (app-boot-failed): with the agent running, the failure's lines
# leave first (it ships every 5 s); without it (logs.agent off, a failed install) nothing can
# ship them, and the report comes after this.
BOOT_FAILURE_REPORT_DELAY_SECONDS = 60

# The instance metadata service (IPv4, and IPv6 on Nitro): its credentials endpoint hands out
# the instance role's keys to any process that asks.
INSTANCE_METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")


def app_metadata_access(settings: Settings) -> str:
    """The app units' line on IMDS: denied unless the stack says the app uses the role
    (app.awsCredentials). app-secrets, app-release and app-warm-stop keep it: they use the role."""
    # No comment line in the unit: like the templates' comments, it would cost user-data bytes.
    return "" if settings.app.aws_credentials else f"IPAddressDeny={' '.join(INSTANCE_METADATA_ADDRESSES)}"


def unit_files(machine: UserDataInputs) -> dict[str, str]:
    """Unit name -> unit file text, for every unit this machine gets."""
    settings = machine.settings
    celery_app = settings.app.module
    metadata_access = app_metadata_access(settings)
    units = {
        SECRETS_UNIT: _render_unit(
            SECRETS_UNIT,
            secrets_dir_name=SECRETS_DIR_NAME,
            secrets_source_env=SECRETS_SOURCE_ENV,
            fetch_secrets_bin=FETCH_SECRETS_BIN,
            boot_failed_unit=BOOT_FAILED_ON_FAILURE,
        ),
        RELEASE_UNIT: _render_unit(
            RELEASE_UNIT,
            release_env=RELEASE_ENV,
            release_bin=RELEASE_BIN,
            releases_dir=RELEASES_DIR,
            app_root=APP_ROOT,
            boot_failed_unit=BOOT_FAILED_ON_FAILURE,
        ),
        BOOT_FAILED_UNIT: _render_unit(
            BOOT_FAILED_UNIT,
            region=settings.region,
            report_delay=BOOT_FAILURE_REPORT_DELAY_SECONDS,
            start_timeout=BOOT_FAILURE_REPORT_DELAY_SECONDS + 120,
            boot_failed_bin=BOOT_FAILED_BIN,
        ),
        RELEASE_COMMAND_UNIT: _render_unit(
            RELEASE_COMMAND_UNIT,
            secrets_unit=SECRETS_UNIT,
            release_unit=RELEASE_UNIT,
            release_command_env=RELEASE_COMMAND_ENV,
            release_command_bin=RELEASE_COMMAND_BIN,
            metadata_access=metadata_access,
        ),
    }
    if machine.database:
        units |= database_password_units()
    if machine.role == "web":
        units[GUNICORN_UNIT] = _render_unit(
            GUNICORN_UNIT,
            wsgi_app=settings.app.wsgi_application,
            gunicorn_env=GUNICORN_ENV,
            runtime_dir_name=GUNICORN_RUNTIME_DIR_NAME,
            runtime_dir=GUNICORN_RUNTIME_DIR,
            stop_timeout=settings.web.gunicorn_timeout + GUNICORN_GRACE_SECONDS,
            metadata_access=metadata_access,
        )
        return units
    for queue in machine.queues:
        units[worker_unit(queue.name)] = _render_unit(
            "celery-worker.service",
            queue=queue.name,
            celery_app=celery_app,
            queue_env=worker_env_file(queue.name),
            stop_timeout=settings.worker.stop_timeout(queue),
            metadata_access=metadata_access,
        )
    units[WARM_STOP_UNIT] = _render_unit(
        WARM_STOP_UNIT, region=settings.region, hook_name=TERMINATION_HOOK, warm_stop_bin=WARM_STOP_BIN
    )
    if machine.runs_beat:
        units[BEAT_UNIT] = _render_unit(
            BEAT_UNIT,
            celery_app=celery_app,
            beat_state_dir_name=BEAT_STATE_DIR_NAME,
            beat_schedule=BEAT_SCHEDULE,
            metadata_access=metadata_access,
        )
        units |= queue_metrics_units(settings)
    return units


def database_password_units() -> dict[str, str]:
    """database.mode rds: the password file's writer (at boot, before app-secrets) and its timer."""
    return {
        DATABASE_PASSWORD_UNIT: _render_unit(
            DATABASE_PASSWORD_UNIT,
            secrets_unit=SECRETS_UNIT,
            boot_failed_unit=BOOT_FAILED_ON_FAILURE,
            database_dir_name=DATABASE_DIR_NAME,
            secrets_source_env=SECRETS_SOURCE_ENV,
            database_password_bin=DATABASE_PASSWORD_BIN,
        ),
        DATABASE_PASSWORD_TIMER: _render_unit(DATABASE_PASSWORD_TIMER),
    }


def queue_metrics_units(settings: Settings) -> dict[str, str]:
    """The backlog publisher and its timer: on the Beat instance, which exists exactly once."""
    return {
        QUEUE_METRICS_UNIT: _render_unit(
            QUEUE_METRICS_UNIT,
            secrets_unit=SECRETS_UNIT,
            region=settings.region,
            namespace=metrics_namespace(settings.project, settings.stack),
            stack=resource_prefix(settings.project, settings.stack),
            queues=",".join(queue.name for queue in settings.worker.queues),
            beat_unit=BEAT_UNIT,
            backlog_metric=QUEUE_BACKLOG_METRIC,
            heartbeat_metric=BEAT_HEARTBEAT_METRIC,
            stack_dimension=STACK_DIMENSION,
            queue_dimension=QUEUE_DIMENSION,
            queue_metrics_bin=QUEUE_METRICS_BIN,
        ),
        QUEUE_METRICS_TIMER: _render_unit(QUEUE_METRICS_TIMER),
    }


# --- cloud-config ------------------------------------------------------------------------------


def machine_files(machine: UserDataInputs) -> list[WrittenFile]:
    """Every file cloud-init writes on this machine."""
    settings = machine.settings
    runs_agents = bool(agents_to_run(settings))
    scripts = [
        WrittenFile(path, shipped_script(Path(path).name), "root:root", "0755")
        for path in (
            FETCH_SECRETS_BIN,
            RELEASE_BIN,
            BOOT_FAILED_BIN,
            RELEASE_COMMAND_BIN,
            *([AGENT_INSTALLER_BIN] if runs_agents else []),
            *([WARM_STOP_BIN] if machine.role == "worker" else []),
            *([QUEUE_METRICS_BIN] if machine.runs_beat else []),
            *([DATABASE_PASSWORD_BIN] if machine.database else []),
        )
    ]
    agents = [WrittenFile(AGENT_KEYRING, AWS_AGENT_KEYRING, "root:root", "0644")] if runs_agents else []
    if settings.logs.agent != "off":
        config = json.dumps(cloudwatch_agent_config(machine), separators=(",", ":"), sort_keys=True) + "\n"
        agents.append(WrittenFile(CLOUDWATCH_AGENT_CONFIG, config, "root:root", "0644"))
    units = [WrittenFile(f"{UNIT_DIR}/{name}", text, "root:root", "0644") for name, text in unit_files(machine).items()]

    def readable_by_services(path: str, values: dict[str, str | int]) -> WrittenFile:
        # Owned by a group cloud-init creates in this same boot: written late (`defer`), after
        # users_groups has run, or the chown fails.
        return WrittenFile(path, render_env(values), f"root:{GROUP}", "0640", defer=True)

    envs = [
        WrittenFile(SECRETS_SOURCE_ENV, render_env(secrets_source_env(machine)), "root:root", "0640"),
        WrittenFile(RELEASE_ENV, render_env(release_env(settings)), "root:root", "0640"),
        WrittenFile(RELEASE_COMMAND_ENV, render_env(release_command_env(settings)), "root:root", "0640"),
        readable_by_services(APP_ENV, app_env(settings, machine.database)),
    ]
    if machine.role == "web":
        envs.append(readable_by_services(GUNICORN_ENV, gunicorn_env(settings)))
    else:
        envs += [readable_by_services(worker_env_file(q.name), worker_env(q)) for q in machine.queues]
    # Units, then env files, then the rest, each by path: gzip's 32 KiB window then finds the units'
    # shared lines next to each other (about 110 bytes less than scripts first; EC2's limit is near).
    return sorted(scripts + agents + units + envs, key=_compression_order)


def _compression_order(file: WrittenFile) -> tuple[int, str]:
    kind = 0 if file.path.startswith(UNIT_DIR) else 1 if file.path.endswith(".env") else 2
    return kind, file.path


def agents_to_run(settings: Settings) -> list[str]:
    """AWS's agents the first boot runs install-aws-agent for: it installs one the image lacks
    (checked), then starts it. The CloudWatch agent always needs starting with the stack's config,
    also from an image that carries it; an image's SSM agent starts by itself."""
    return [SSM_AGENT_PACKAGE] * (settings.instances.ssm_agent == "install") + [CLOUDWATCH_AGENT_PACKAGE] * (
        settings.logs.agent != "off"
    )


def agent_install_command(settings: Settings, package: str) -> list[str]:
    if package == CLOUDWATCH_AGENT_PACKAGE:
        config, version = ["--config", CLOUDWATCH_AGENT_CONFIG], settings.logs.agent_version
    else:
        config, version = [], settings.instances.ssm_agent_version
    return [AGENT_INSTALLER_BIN, "--keyring", AGENT_KEYRING, *config, package, version, settings.region]


def shipped_units(machine: UserDataInputs) -> list[str]:
    """Every service of the stack on this machine and the SSM agent's: their journal lines ship.
    A timer writes no lines of its own: the service it starts does (journald matches by the
    writing process's unit)."""
    services = [unit.replace(".timer", ".service") for unit in units_to_enable(machine)]
    return list(dict.fromkeys(services)) + [SSM_AGENT_UNIT]


def cloudwatch_agent_config(machine: UserDataInputs) -> dict[str, Any]:
    """The CloudWatch agent's config (AWS's JSON schema): each unit's journal (the agent reads the
    journal itself, no syslog copy) and the log files systemd does not hold, to this role's group,
    one stream per instance and source. Retention is the group's, set by the program."""
    settings = machine.settings
    group = log_group_name(settings.project, settings.stack, machine.role)
    return {
        "agent": {"region": settings.region},
        "logs": {
            "logs_collected": {
                "journald": {
                    "collect_list": [
                        {"log_group_name": group, "log_stream_name": log_stream_name(unit), "units": [unit]}
                        for unit in shipped_units(machine)
                    ]
                },
                "files": {
                    "collect_list": [
                        {"file_path": path, "log_group_name": group, "log_stream_name": log_stream_name(path)}
                        for path in SHIPPED_LOG_FILES
                    ]
                },
            }
        },
    }


def cloud_config(machine: UserDataInputs) -> dict[str, Any]:
    def entry(file: WrittenFile) -> dict[str, Any]:
        item: dict[str, Any] = {
            "path": file.path,
            "content": file.content,
            "owner": file.owner,
            "permissions": file.permissions,
        }
        return item | {"defer": True} if file.defer else item

    return {
        "groups": [GROUP],
        # No default user and no SSH keys: operators use SSM Session Manager.
        "users": [
            {
                "name": USER,
                "primary_group": GROUP,
                "system": True,
                # A home that does not exist (Debian's convention for system users): with
                # useradd's /home/app, ProtectHome= makes every lookup under it EACCES instead of
                # ENOENT, and libpq then fails on ~/.postgresql/postgresql.crt (found in tests/vm).
                "homedir": "/nonexistent",
                "no_create_home": True,
                "shell": "/usr/sbin/nologin",
                "lock_passwd": True,
            }
        ],
        "packages": list(PACKAGES),
        "write_files": [entry(file) for file in machine_files(machine)],
        "runcmd": [
            # The units first, not waited for (--no-block): the release install and the secrets
            # fetch run beside the agent installs (~15 s under emulation) instead of after them,
            # and a failing or hanging unit delays neither agent. The CloudWatch agent's journald
            # input starts at the journal's end, so a unit that fails before it runs has its
            # lines written again by app-boot-failed once it does.
            [*ENABLE_UNITS, *units_to_enable(machine)],
            *[agent_install_command(machine.settings, package) for package in agents_to_run(machine.settings)],
        ],
    }


# libyaml's emitter when PyYAML has it (wheels do): the same output, many times faster.
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _BlockStyleDumper(_SafeDumper):  # type: ignore[misc,valid-type]
    """Multi-line strings (units, scripts) as literal blocks, so a reviewer diffs real lines."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def user_data(machine: UserDataInputs) -> str:
    return _document(cloud_config(machine))


def _document(config: dict[str, Any]) -> str:
    return "#cloud-config\n" + yaml.dump(config, Dumper=_BlockStyleDumper, sort_keys=False, width=1000)


def with_agent_keyring(document: str, keyring: str) -> str:
    """The same user-data with another keyring for the agent packages. Only the VM tests call it:
    their stand-in packages are signed with a throwaway key. No config reaches it, so a stack
    always carries AWS's keys."""
    config = parse_user_data(document)
    entries = [entry for entry in config["write_files"] if entry["path"] == AGENT_KEYRING]
    if not entries:
        raise ValueError(f"the user-data installs no agent: it carries no {AGENT_KEYRING}")
    entries[0]["content"] = keyring
    return _document(config)


# EC2 refuses user-data over 16 KiB; cloud-init unpacks gzip by itself.
USER_DATA_LIMIT = 16 * 1024


def pack_user_data(document: str) -> bytes:
    """The document as gzip, which cloud-init unpacks by itself, with mtime 0: the same settings
    give the same bytes, so a preview shows no change that would replace an instance. zlib's level
    9 first, so a document it fits keeps the bytes it has always had. Past EC2's limit, zopfli:
    the same format, about 4.5 % smaller. Its default 15 iterations gain 7 more bytes than 2 for
    2.4x the CPU (prod's Beat worker with an RDS database, 2026-12-05: zlib 16,448 bytes, zopfli
    15,718 in 0.066 s, 15,711 in 0.159 s), and every preview packs each document twice."""
    data = document.encode()
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    if len(packed) > USER_DATA_LIMIT:
        import zopfli.gzip  # imported only for the documents that need it

        packed = zopfli.gzip.compress(data, numiterations=2)
    return packed


def user_data_base64(machine: UserDataInputs) -> str:
    """The user-data as EC2 receives it: packed (above), base64-encoded."""
    packed = pack_user_data(user_data(machine))
    if len(packed) > USER_DATA_LIMIT:
        raise ValueError(
            f"{machine.role} user-data is {len(packed)} bytes compressed; EC2 allows {USER_DATA_LIMIT} "
            "(fewer worker.queues or task routes, or ship the units in the AMI)"
        )
    return base64.b64encode(packed).decode()


def decode_user_data(encoded: str) -> str:
    """The #cloud-config text back from what `user_data_base64` produced."""
    return gzip.decompress(base64.b64decode(encoded)).decode()


# --- reading a rendered document back ------------------------------------------------------------


def parse_user_data(document: str) -> dict[str, Any]:
    if not document.startswith("#cloud-config\n"):
        raise ValueError("user-data does not start with '#cloud-config'")
    # libyaml's loader when PyYAML has it: a pure-Python parse of a 60 KB document is ~0.14 s.
    parsed = yaml.load(document, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(parsed, dict):
        raise ValueError("user-data is not a YAML mapping")
    return parsed


# cloud-init's write_files defaults for the keys it makes optional (cc_write_files).
WRITE_FILES_DEFAULTS = {"content": "", "owner": "root:root", "permissions": "0644"}


def written_files(document: str) -> list[WrittenFile]:
    """Any #cloud-config's files, read as cloud-init does: owner, permissions and content are
    optional there, so a document that leaves them out (not only the program's) is read too."""
    return [
        WrittenFile(f["path"], f["content"], f["owner"], f["permissions"], bool(f.get("defer")))
        for f in ({**WRITE_FILES_DEFAULTS, **entry} for entry in parse_user_data(document).get("write_files", []))
    ]


def enabled_units(document: str) -> list[str]:
    for command in parse_user_data(document).get("runcmd", []):
        if tuple(command[: len(ENABLE_UNITS)]) == ENABLE_UNITS:
            return list(command[len(ENABLE_UNITS) :])
    return []
