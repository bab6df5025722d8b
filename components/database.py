"""The app's PostgreSQL when the stack creates it (`database.mode: rds`): an RDS instance in the
private subnets, reached on 5432 from the web and worker hosts only, TLS forced, encrypted with
the stack key, its master password made and kept by RDS in Secrets Manager (never in user-data
or the state), its logs in CloudWatch, and deletion protected on a protected stack.

Its security group and rules are its own (the web and worker groups get exactly one egress rule
each, to this group): the database exists only with this component, so its rules go with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.access import database_secret_policy

POSTGRES_PORT = 5432
# What RDS for PostgreSQL exports to CloudWatch Logs: the server log and the major upgrade's log.
LOG_EXPORTS = ("postgresql", "upgrade")
# Performance Insights' free tier keeps a week.
PERFORMANCE_INSIGHTS_RETENTION_DAYS = 7
# AWS's current RSA CA (the one a client's bundle verifies against, sslmode=verify-full).
CA_CERT_IDENTIFIER = "rds-ca-rsa2048-g1"


def rds_log_group_name(identifier: str, log: str) -> str:
    """Where RDS writes an exported log (its fixed naming): created beforehand, so it has the
    stack's retention and key rather than RDS's never-expiring, unencrypted default."""
    return f"/aws/rds/instance/{identifier}/{log}"


@dataclass(frozen=True)
class DatabaseArgs:
    description: str
    # The RDS instance identifier (AWS's name for it; its log groups are named after it).
    identifier: str
    engine_version: str
    # The parameter group's family, following the major: postgres16, postgres17.
    parameter_family: str
    instance_class: str
    allocated_storage_gb: int
    # Storage autoscaling's ceiling; None: no autoscaling.
    max_allocated_storage_gb: int | None
    backup_retention_days: int
    multi_az: bool
    db_name: str
    username: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    # Role (web, worker) -> its security group: the only ones admitted on 5432.
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    # Instance kind -> role name: each may read the master user's secret, nothing else of it.
    reader_role_names: Mapping[str, pulumi.Input[str]]
    # Encrypts storage, snapshots, the secret, Performance Insights and the log groups.
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    # Deletion protection: `pulumi destroy` and replacements of the instance fail while set.
    protect: bool
    tags: dict[str, str]


class Database(pulumi.ComponentResource):
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    # The Secrets Manager secret RDS keeps the master user's {"username", "password"} in.
    secret_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    instance_identifier: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags
        group = aws.ec2.SecurityGroup(
            f"{name}-database",
            vpc_id=args.vpc_id,
            description=f"{args.description}: {POSTGRES_PORT} from web and worker hosts only",
            tags={**tags, "Name": f"{name}-database"},
            opts=child,
        )
        for role, client in args.client_security_group_ids.items():
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-database-from-{role}",
                security_group_id=group.id,
                referenced_security_group_id=client,
                ip_protocol="tcp",
                from_port=POSTGRES_PORT,
                to_port=POSTGRES_PORT,
                description=f"PostgreSQL from {role} hosts",
                tags=tags,
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{role}-to-database",
                security_group_id=client,
                referenced_security_group_id=group.id,
                ip_protocol="tcp",
                from_port=POSTGRES_PORT,
                to_port=POSTGRES_PORT,
                description="the app's database (PostgreSQL, TLS)",
                tags=tags,
                opts=child,
            )
        subnets = aws.rds.SubnetGroup(
            f"{name}-database-subnets",
            description=f"{args.description}: private subnets only",
            subnet_ids=args.subnet_ids,
            tags=tags,
            opts=child,
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-database-params",
            family=args.parameter_family,
            description=f"{args.description}: TLS only",
            # Plain-text connections are refused by the server, whatever a client asks for.
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "ssl_min_protocol_version", "value": "TLSv1.2"},
            ],
            tags=tags,
            opts=child,
        )
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-database-{log}-log",
                name=rds_log_group_name(args.identifier, log),
                retention_in_days=args.log_retention_days,
                kms_key_id=args.kms_key_arn,
                tags=tags,
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
        instance = aws.rds.Instance(
            f"{name}-database",
            identifier=args.identifier,
            engine="postgres",
            engine_version=args.engine_version,
            auto_minor_version_upgrade=True,
            # A major upgrade is a decision (engineVersion), never a surprise.
            allow_major_version_upgrade=False,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.kms_key_arn,
            db_name=args.db_name,
            username=args.username,
            # RDS makes the password and keeps it in Secrets Manager under the stack key; it never
            # passes through the program, its state or the machines' user-data.
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.kms_key_arn,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[group.id],
            publicly_accessible=False,
            ca_cert_identifier=CA_CERT_IDENTIFIER,
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.protect,
            # Whatever deletes the instance leaves its data in a snapshot. The name is fixed: a
            # second deletion fails until the first snapshot is removed, never overwrites it.
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.identifier}-final",
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.kms_key_arn,
            performance_insights_retention_period=PERFORMANCE_INSIGHTS_RETENTION_DAYS,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=log_groups, protect=args.protect),
        )
        # RDS creates the secret with the instance (manage_master_user_password): always there.
        secret_arn = instance.master_user_secrets.apply(lambda secrets: str(secrets[0].secret_arn))
        for kind, role_name in args.reader_role_names.items():
            aws.iam.RolePolicy(
                f"{name}-{kind}-read-database-secret",
                role=role_name,
                policy=secret_arn.apply(database_secret_policy),
                opts=child,
            )

        self.address = instance.address
        self.port = instance.port.apply(lambda port: int(port or POSTGRES_PORT))
        self.secret_arn = secret_arn
        self.security_group_id = group.id
        self.instance_identifier = pulumi.Output.from_input(args.identifier)
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "secretArn": self.secret_arn,
                "securityGroupId": self.security_group_id,
            }
        )
