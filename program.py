"""The program as functions: `read_settings` reads the stack config once and validates it;
`build(settings)` checks that every machine kind can be rendered, then wires the components in
dependency order and exports what operators and the ops tool need. __main__.py (what `pulumi up`
runs) and the offline render call the same two."""

from __future__ import annotations

import gc

import pulumi
import pulumi_aws as aws
from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env, is_config_secret

from components.access import AccessArgs, InstanceAccess, KindAccess
from components.alerting import AlertTopics, AlertTopicsArgs, Monitoring, MonitoringArgs
from components.database import Database, DatabaseArgs, rds_log_group_name
from components.encryption import StackKey, StackKeyArgs
from components.fleet import BOOT_GRACE_SECONDS, Fleet, FleetArgs, GroupSize, MachineGroupArgs, WorkerScaling
from components.front_door import FrontDoor, FrontDoorArgs
from components.live_release import LiveRelease, LiveReleaseArgs
from components.logs import InstanceLogs, InstanceLogsArgs
from components.network import Network, NetworkArgs
from components.redis import Redis, RedisArgs
from components.secrets import Secrets, SecretsArgs
from components.security import DatabasePeer, SecurityArgs, SecurityGroups
from components.signals import CeleryMetrics, LoadBalancerIds, Thresholds, WatchTargets
from config import ConfigError, Settings, load_settings
from config.kinds import MachineKind, kind_tags, machine_kinds
from userdata import layout
from userdata.layout import GUNICORN_GRACE_SECONDS
from userdata.render import DatabaseEndpoint, SettingError, UserDataInputs, user_data_base64

# Each Output and task of Pulumi's SDK is a few containers: at Python's default pace the program
# ran a full collection over the ~200,000 objects the SDKs import every few resources. A hundred
# times rarer, evaluation takes about a tenth less (bench/program_eval.py); the process is
# short-lived and leaves little garbage.
gc.set_threshold(700, 10, 1000)


def stack_config() -> dict[str, object]:
    """Every `<project>:*` value the engine passed (the project Pulumi.yaml names), so an unknown
    (misspelled) key is an error instead of a silently ignored setting. pulumi.Config can only
    look up known keys."""
    values = {**get_config_env(), **CONFIG.get()}
    prefix = f"{pulumi.get_project()}:"
    return {key.removeprefix(prefix): value for key, value in values.items() if key.startswith(prefix)}


def secret_keys(keys: list[str]) -> list[str]:
    """The keys the engine marks secret (`pulumi config set --secret`): it hands them over decrypted."""
    marked = set(get_config_secret_keys_env())
    project = pulumi.get_project()
    return [key for key in keys if f"{project}:{key}" in marked or is_config_secret(f"{project}:{key}")]


def invalid_config(problems: str) -> pulumi.RunError:
    # RunError: the engine prints the message alone, without a Python traceback.
    return pulumi.RunError(f"invalid stack config ({pulumi.get_stack()}):\n{problems}")


def read_settings() -> Settings:
    config = stack_config()
    try:
        return load_settings(
            config,
            project=pulumi.get_project(),
            stack=pulumi.get_stack(),
            region=pulumi.Config("aws").get("region"),
            secret_keys=secret_keys(list(config)),
        )
    except ConfigError as error:
        raise invalid_config(str(error)) from None


def check_pinned_image(settings: Settings) -> None:
    """A pinned amiId must be an image of the stack's architecture: only AWS knows, so ask it (one
    lookup, in the preview too) before any resource, rather than boot instances that cannot run it."""
    ami_id = settings.instances.ami_id
    if ami_id is None:
        return  # the program looks up Debian's image for instances.architecture itself
    image = aws.ec2.get_ami(filters=[{"name": "image-id", "values": [ami_id]}])
    if image.architecture != settings.instances.architecture:
        raise invalid_config(
            f"{pulumi.get_project()}:instances.amiId: {ami_id} is an "
            f"{image.architecture} image while instances.architecture is {settings.instances.architecture}: "
            "pin an image of that architecture or change instances.architecture"
        )


# As long as ElastiCache's longest primary endpoint (a 40-character replication group id): a
# stand-in for the endpoint that a preview of a new stack does not know yet.
PLACEHOLDER_REDIS_HOST = f"master.{'x' * 40}.abcdef.euw1.cache.amazonaws.com"
# Likewise the database's endpoint and its secret's ARN, as long as RDS makes them.
PLACEHOLDER_DATABASE_HOST = "{identifier}.abcdefghijkl.{region}.rds.amazonaws.com"
PLACEHOLDER_DATABASE_SECRET = f"arn:aws:secretsmanager:{{region}}:123456789012:secret:rds!db-{'0' * 36}-AbCdEf"


def machine_problems(settings: Settings) -> list[str]:
    """Renders each role's user-data once with a placeholder endpoint, so whatever the renderer
    refuses (an env value it cannot write, user-data over EC2's limit) stops the program before
    its first resource, in a preview as in an update: the real render only runs once Redis's
    endpoint is known, half-way through `pulumi up`."""
    identifier, region = layout.database_identifier(settings.project, settings.stack), settings.region
    database = (
        DatabaseEndpoint(
            PLACEHOLDER_DATABASE_HOST.format(identifier=identifier, region=region),
            PLACEHOLDER_DATABASE_SECRET.format(region=region),
        )
        if settings.database.mode == "rds"
        else None
    )
    problems = []
    for kind in machine_kinds(settings):
        machine = UserDataInputs(settings, kind, PLACEHOLDER_REDIS_HOST, 6379, database)
        try:
            user_data_base64(machine)
        except SettingError as error:
            problems.append(f"{settings.project}:{error.key}: {error.message}")
        except ValueError as error:
            problems.append(f"{settings.project}: the {machine.role} instances' user-data cannot be rendered: {error}")
    return list(dict.fromkeys(problems))  # a rule several kinds break is reported once


def build(settings: Settings) -> None:
    """The stack's resources from its settings. Whatever the renderer refuses stops it before the
    first resource."""
    if problems := machine_problems(settings):
        raise invalid_config("\n".join(problems))
    check_pinned_image(settings)
    tags = {layout.PROJECT_TAG: settings.project, layout.STACK_TAG: settings.stack}
    # Every resource's name starts with it; AWS's names that must be unique in an account too.
    name = layout.resource_prefix(settings.project, settings.stack)
    # What every ARN the program writes starts with: arn:aws, arn:aws-us-gov, arn:aws-cn...
    partition = layout.partition(settings.region)

    account_id = aws.get_caller_identity_output().account_id
    secret_parameters = [
        settings.parameter_name(layout.AUTH_TOKEN_PARAMETER),
        settings.parameter_name(layout.DJANGO_SECRET_KEY_PARAMETER),
    ]

    def parameter_arn(parameter: str) -> pulumi.Output[str]:
        return account_id.apply(lambda account: f"arn:{partition}:ssm:{settings.region}:{account}:parameter{parameter}")

    release_parameter = settings.parameter_name(layout.RELEASE_PARAMETER)
    artifact_location = (
        f"{settings.app.artifact_bucket}/{settings.app.artifact_prefix}" if settings.app.source == "s3" else None
    )

    # The roles first, their grants by name: the stack key's policy names the roles, and the
    # parameters are encrypted with that key. One role per kind of machine; Beat's alone publishes
    # the queue metrics (it runs app-queue-metrics).
    kinds = {kind.name: kind for kind in machine_kinds(settings)}
    access = InstanceAccess(
        name,
        AccessArgs(
            # The stack's two and the app's own (app.secretParameters, created by the user): exactly these.
            secret_parameter_arns=[
                parameter_arn(parameter)
                for parameter in [*secret_parameters, *sorted(str(p) for p in settings.app.secret_parameters.values())]
            ],
            release_parameter_arn=parameter_arn(release_parameter),
            artifact_location=artifact_location,
            tags=tags,
            kinds=[KindAccess(kind.name, kind.publishes_metrics) for kind in kinds.values()],
            metrics_namespace=layout.metrics_namespace(settings.project, settings.stack),
            partition=partition,
        ),
    )
    # The instances' log groups, one per role: /<project>/<stack>/<role>.
    instance_log_group_prefix = layout.log_group_name(settings.project, settings.stack, "")
    security_settings = settings.security
    # Fixed names: the stack key's policy names the alarm topic before it exists; only alarms named
    # with the prefix may publish to it.
    alarm_topic_name, alarm_prefix = f"{name}-alerts", f"{name}-"
    # database.mode rds: the stack's PostgreSQL (components/database.py), named for its log groups.
    creates_database = settings.database.mode == "rds"
    database_identifier = layout.database_identifier(settings.project, settings.stack)
    if security_settings.kms_key_arn:
        kms_key_arn: pulumi.Input[str] = security_settings.kms_key_arn
    else:
        kms_key_arn = StackKey(
            name,
            StackKeyArgs(
                description=f"{settings.project} {settings.stack}: SecureStrings, Redis at rest, logs, root volumes",
                alias_name=f"alias/{settings.project}/{settings.stack}",
                region=settings.region,
                account_id=account_id,
                administrator_arn=security_settings.key_administrator_arn
                or account_id.apply(lambda account: f"arn:{partition}:iam::{account}:root"),
                instance_role_arns=list(access.role_arns.values()),
                parameter_path=settings.parameter_name(""),
                log_group_prefixes=(
                    f"{name}-",
                    instance_log_group_prefix,
                    *([rds_log_group_name(database_identifier, "")] if creates_database else []),
                ),
                # Auto Scaling's service-linked role launches the instances: it encrypts their root volumes.
                autoscaling=True,
                protect=security_settings.protect,
                tags=tags,
                alarm_topic_name=alarm_topic_name,
                partition=partition,
                database=creates_database,
            ),
        ).key_arn
    alerts = settings.alerts
    alert_topics = AlertTopics(
        name,
        AlertTopicsArgs(
            region=settings.region,
            account_id=account_id,
            alarm_topic_name=alarm_topic_name,
            events_topic_name=f"{name}-broker-events",
            alarm_prefix=alarm_prefix,
            kms_key_arn=kms_key_arn,
            emails=alerts.emails,
            tags=tags,
            partition=partition,
        ),
    )
    network = Network(
        name,
        NetworkArgs(
            vpc_id=settings.network.vpc_id,
            private_subnet_ids=settings.network.private_subnet_ids,
            public_subnet_ids=settings.network.public_subnet_ids,
            vpc_cidr=settings.network.cidr,
            availability_zones=settings.network.availability_zones,
            nat_gateways=settings.network.nat_gateways,
            region=settings.region,
            account_id=account_id,
            flow_log_retention_days=security_settings.flow_log_retention_days,
            kms_key_arn=kms_key_arn,
            artifact_location=artifact_location,
            log_agent_bucket=settings.logs.agent == "install",
            tags=tags,
            partition=partition,
        ),
    )
    secrets = Secrets(
        name,
        SecretsArgs(
            django_secret_key_parameter=secret_parameters[1],
            django_secret_key_version=settings.app.secret_key_version,
            auth_token_next_parameter=settings.parameter_name(layout.AUTH_TOKEN_NEXT_PARAMETER),
            auth_token_version=settings.redis.auth_token_version,
            # A preview's role cannot decrypt, and needs nothing: write-only values are never diffed.
            reads_back=not pulumi.runtime.is_dry_run(),
            kms_key_arn=kms_key_arn,
            tags=tags,
        ),
    )
    # app.release seeds the live release; deploys and rollbacks move it (see components/live_release.py).
    live_release = LiveRelease(
        name,
        LiveReleaseArgs(parameter_name=release_parameter, initial_release=settings.app.release, tags=tags),
    )
    security = SecurityGroups(
        name,
        SecurityArgs(
            vpc_id=network.vpc_id,
            web_port=settings.web.port,
            load_balancer=settings.load_balancer.enabled,
            web_ingress_cidrs=settings.web.ingress_cidrs,
            web_ingress_security_group_ids=settings.web.ingress_security_group_ids,
            tags=tags,
            # mode none: the hosts reach no database (nothing opens).
            database=(
                DatabasePeer(
                    port=settings.database.database_port,
                    security_group_id=settings.database.security_group_id,
                    cidrs=settings.database.cidrs,
                    manage_ingress=settings.database.manage_ingress,
                )
                if settings.database.mode == "existing"
                else None
            ),
        ),
    )
    database = None
    if creates_database:
        database_settings = settings.database
        database = Database(
            name,
            DatabaseArgs(
                description=f"PostgreSQL for {settings.project} {settings.stack}",
                identifier=database_identifier,
                engine_version=database_settings.rds_engine_version,
                parameter_family=database_settings.rds_parameter_family,
                instance_class=database_settings.rds_instance_class,
                allocated_storage_gb=database_settings.rds_allocated_storage_gb,
                max_allocated_storage_gb=database_settings.max_allocated_storage_gb,
                backup_retention_days=database_settings.rds_backup_retention_days,
                multi_az=database_settings.rds_multi_az,
                db_name=database_settings.rds_name,
                username=database_settings.rds_username,
                vpc_id=network.vpc_id,
                subnet_ids=network.private_subnet_ids,
                client_security_group_ids={
                    "web": security.web_security_group_id,
                    "worker": security.worker_security_group_id,
                },
                reader_role_names=access.role_names,
                kms_key_arn=kms_key_arn,
                log_retention_days=settings.logs.retention_days,
                protect=security_settings.protect,
                tags=tags,
            ),
        )
    redis_settings = settings.redis
    redis = Redis(
        name,
        RedisArgs(
            description=f"Celery broker for {settings.project} {settings.stack}",
            engine=redis_settings.engine,
            engine_version=redis_settings.version,
            node_type=redis_settings.node_type,
            replicas=redis_settings.replicas,
            multi_az=redis_settings.multi_az,
            snapshot_retention_days=redis_settings.snapshot_retention_days,
            snapshot_window=redis_settings.snapshot_window,
            maintenance_window=redis_settings.maintenance_window,
            apply_immediately=redis_settings.apply_immediately,
            log_retention_days=redis_settings.slow_log_retention_days,
            auth_token_update_strategy=redis_settings.auth_token_update_strategy,
            subnet_ids=network.private_subnet_ids,
            security_group_id=security.redis_security_group_id,
            auth_token=secrets.auth_token,
            auth_token_version=settings.redis.auth_token_version,
            auth_token_parameter=secret_parameters[0],
            kms_key_arn=kms_key_arn,
            protect=security_settings.protect,
            tags=tags,
            notification_topic_arn=alert_topics.events_topic_arn,
        ),
    )

    if settings.logs.agent != "off":
        InstanceLogs(
            name,
            InstanceLogsArgs(
                group_names=[layout.log_group_name(settings.project, settings.stack, role) for role in layout.ROLES],
                retention_days=settings.logs.retention_days,
                kms_key_arn=kms_key_arn,
                # Each kind writes into its role's group (the Beat instance is a worker).
                writers={
                    kind: (role_name, layout.log_group_name(settings.project, settings.stack, kinds[kind].role))
                    for kind, role_name in access.role_names.items()
                },
                tags=tags,
            ),
        )

    def user_data(kind: MachineKind) -> pulumi.Output[str]:
        """One kind of machine's user-data, once Redis's endpoint is known: the one place where
        Outputs meet the (pure) renderer."""
        # database.mode rds: where the database is and its secret's ARN (never the password).
        database_parts = [database.address, database.secret_arn] if database else []
        return pulumi.Output.all(redis.primary_endpoint, redis.port, *database_parts).apply(
            lambda endpoint: user_data_base64(
                UserDataInputs(
                    settings,
                    kind,
                    redis_host=endpoint[0],
                    redis_port=int(endpoint[1]),
                    database=DatabaseEndpoint(endpoint[2], endpoint[3]) if database else None,
                )
            )
        )

    load_balancer = settings.load_balancer
    front_door = None
    if load_balancer.enabled and security.load_balancer_security_group_id is not None:
        front_door = FrontDoor(
            name,
            FrontDoorArgs(
                vpc_id=network.vpc_id,
                public_subnet_ids=network.public_subnet_ids,
                security_group_id=security.load_balancer_security_group_id,
                app_port=settings.web.port,
                health_check_path=load_balancer.health_check_path,
                # gunicorn's stop timeout: a request gunicorn may still finish is never cut short.
                deregistration_delay_seconds=settings.web.gunicorn_timeout + GUNICORN_GRACE_SECONDS,
                certificate_arn=load_balancer.certificate_arn,
                domain=load_balancer.domain,
                hosted_zone_id=load_balancer.hosted_zone_id,
                access_logs_bucket=load_balancer.access_logs_bucket,
                access_logs_prefix=load_balancer.access_logs_prefix,
                tags=tags,
            ),
        )

    # What the Beat instance publishes (the machine contract), read by the alarms, the dashboard and
    # the worker group's scaling policy.
    celery_metrics = CeleryMetrics(
        namespace=layout.metrics_namespace(settings.project, settings.stack),
        backlog_metric=layout.QUEUE_BACKLOG_METRIC,
        heartbeat_metric=layout.BEAT_HEARTBEAT_METRIC,
        stack_dimension=layout.STACK_DIMENSION,
        queue_dimension=layout.QUEUE_DIMENSION,
        # The Stack dimension's value: another project's prod publishes its own series.
        stack=name,
        queues=tuple(queue.name for queue in settings.worker.queues),
    )
    worker_scaling = (
        WorkerScaling(celery_metrics, settings.worker.scaling.target_backlog_per_instance)
        if settings.worker.scales
        else None
    )

    security_groups = {"web": security.web_security_group_id, "worker": security.worker_security_group_id}
    web_targets = [front_door.target_group_arn] if front_door else settings.web.target_group_arns
    fleet = Fleet(
        name,
        FleetArgs(
            kinds=[
                MachineGroupArgs(
                    kind=kind.name,
                    size=GroupSize(kind.min_size, kind.desired_capacity, kind.max_size),
                    instance_type=kind.instance_type,
                    security_group_id=security_groups[kind.role],
                    user_data=user_data(kind),
                    tags=kind_tags(tags, kind),
                    instance_profile_name=access.instance_profile_names[kind.name],
                    role_name=access.role_names[kind.name],
                    min_healthy_percentage=kind.min_healthy_percentage,
                    terminate_first=kind.terminate_first,
                    target_group_arns=web_targets if kind.serves_web else (),
                    termination_hold_seconds=kind.termination_hold_seconds,
                    scaling=worker_scaling if kind.scales_on_backlog else None,
                )
                for kind in kinds.values()
            ],
            ami_id=settings.instances.ami_id,
            architecture=settings.instances.architecture,
            root_volume_gb=settings.instances.root_volume_gb,
            kms_key_arn=kms_key_arn,
            subnet_ids=network.private_subnet_ids,
            termination_hook_name=layout.TERMINATION_HOOK,
        ),
    )

    groups: dict[str, pulumi.Input[str]] = dict(fleet.group_names)
    monitoring = Monitoring(
        name,
        MonitoringArgs(
            region=settings.region,
            targets=WatchTargets(
                cache_node_ids=redis.node_ids,
                load_balancer=(
                    LoadBalancerIds(front_door.arn_suffix, front_door.target_group_arn_suffix) if front_door else None
                ),
                groups=groups,
                celery=celery_metrics,
                beat=settings.worker.beat,
                launch_grace_seconds=BOOT_GRACE_SECONDS,
                thresholds=Thresholds(
                    broker_memory_percent=alerts.broker_memory_percent,
                    broker_cpu_percent=alerts.broker_cpu_percent,
                    broker_connections=alerts.broker_connections,
                    replication_lag_seconds=alerts.replication_lag_seconds,
                    web_error_percent=alerts.web_error_percent,
                    web_p99_seconds=alerts.web_p99_seconds,
                    backlog_threshold=alerts.backlog_threshold,
                    backlog_minutes=alerts.backlog_minutes,
                    # A tenth of the storage left: time to grow it before writes fail.
                    database_free_storage_bytes=settings.database.rds_allocated_storage_gb * 1024**3 / 10,
                ),
                scaling_group=next((kind.name for kind in kinds.values() if kind.scales_on_backlog), None),
                target_backlog_per_instance=worker_scaling.target_backlog_per_instance if worker_scaling else None,
                database=database.instance_identifier if database else None,
            ),
            alarm_prefix=alarm_prefix,
            alarm_topic_arn=alert_topics.alarm_topic_arn,
            dashboard_name=f"{settings.project}-{settings.stack}",
            tags=tags,
        ),
    )

    pulumi.export("project", settings.project)
    pulumi.export("stack", settings.stack)
    pulumi.export("region", settings.region)
    pulumi.export("releaseParameter", live_release.parameter_name)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("redisPrimaryEndpoint", redis.primary_endpoint)
    pulumi.export("redisReaderEndpoint", redis.reader_endpoint)
    pulumi.export("redisPort", redis.port)
    pulumi.export("authTokenParameter", redis.auth_token_parameter_name)
    pulumi.export("djangoSecretKeyParameter", secrets.django_secret_key_parameter_name)
    pulumi.export("webSecurityGroupId", security.web_security_group_id)
    pulumi.export("workerSecurityGroupId", security.worker_security_group_id)
    pulumi.export("redisSecurityGroupId", security.redis_security_group_id)
    pulumi.export("webGroupName", fleet.group_names["web"])
    pulumi.export("workerGroupName", fleet.group_names["worker"])
    pulumi.export("beatGroupName", fleet.group_names.get("worker-beat"))
    pulumi.export("imageId", fleet.image_id)
    pulumi.export("latestDebianImageId", fleet.latest_debian_image_id)
    if front_door:
        pulumi.export("loadBalancerDnsName", front_door.dns_name)
        pulumi.export("url", front_door.url)
    pulumi.export("instanceRoleArns", access.role_arns)
    pulumi.export("kmsKeyArn", kms_key_arn)
    pulumi.export("alarmTopicArn", alert_topics.alarm_topic_arn)
    pulumi.export("brokerEventsTopicArn", alert_topics.events_topic_arn)
    pulumi.export("dashboardName", monitoring.dashboard_name)
    if database:
        pulumi.export("databaseAddress", database.address)
        pulumi.export("databaseSecretArn", database.secret_arn)
        pulumi.export("databaseSecurityGroupId", database.security_group_id)
