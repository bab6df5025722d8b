"""The rules that join two sections (or a section and the region, the project's name), and the
instance types the installed AWS provider knows."""

from __future__ import annotations

import difflib
import functools
import re
from importlib.metadata import version
from typing import Any

from config.schema import (
    DATABASE_SECRET_NAMES,
    PROTECTED_BACKUP_RETENTION_DAYS,
    AppSettings,
    DatabaseSettings,
    LoadBalancerSettings,
    _snake,
)
from userdata.layout import GUNICORN_GRACE_SECONDS, ORIGINAL_PROJECT, resource_prefix

# Starts AWS names that allow only these (the load balancer's, ElastiCache's lowercase group id).
PROJECT_NAME = re.compile(r"[a-z][a-z0-9-]*")
# The longest auto-named resource: `<prefix>-alb` plus Pulumi's 8-character suffix in the load
# balancer's (and target group's) 32 characters.
LONGEST_PREFIX = 32 - len("-alb") - 8


def _name_problems(project: str, stack: str) -> list[str]:
    """A project's name begins its stacks' AWS names (ORIGINAL_PROJECT's stacks keep theirs)."""
    if project == ORIGINAL_PROJECT:
        return []
    if not PROJECT_NAME.fullmatch(project):
        return [
            f"Pulumi.yaml name: got {project!r}; use lowercase letters, digits and '-', starting with a letter "
            "(it begins the stack's AWS names, such as the load balancer's)"
        ]
    prefix = resource_prefix(project, stack)
    if len(prefix) > LONGEST_PREFIX:
        return [
            f"Pulumi.yaml name: {prefix!r} (project-stack) is {len(prefix)} characters; at most {LONGEST_PREFIX} "
            "fit the load balancer's 32-character name with Pulumi's suffix: use a shorter project or stack name"
        ]
    return []


# The Graviton families (every other family is x86_64), for the instance types the provider
# knows (ec2_instance_types); tests/test_config.py fails when a newer pulumi-aws brings a family
# named like Graviton's (generation digit, then "g") that is missing here.
ARM64_FAMILIES = frozenset(
    {
        *("a1", "g5g", "hpc7g", "i4g", "i8g", "i8ge", "im4gn", "is4gen", "t4g", "x2gd", "x8g", "p6e-gb200"),
        *("c6g", "c6gd", "c6gn", "c7g", "c7gd", "c7gn", "c8g", "c8gb", "c8gd", "c8gn", "c9g", "c9gd"),
        *("m6g", "m6gd", "m7g", "m7gd", "m8g", "m8gb", "m8gd", "m8gn", "m9g", "m9gd"),
        *("r6g", "r6gd", "r7g", "r7gd", "r8g", "r8gb", "r8gd", "r8gn"),
    }
)


@functools.cache
def ec2_instance_types() -> tuple[frozenset[str], str]:
    """Every EC2 instance type the installed AWS provider knows (its ec2.InstanceType, generated
    from AWS's API model), and where the list comes from, for the error."""
    # Imported here: only a stack's check needs it (pulumi_aws is the program's own dependency).
    from pulumi_aws.ec2 import InstanceType

    return frozenset(member.value for member in InstanceType), f"pulumi-aws {version('pulumi_aws')}'s ec2.InstanceType"


def instance_type_architecture(instance_type: str) -> str:
    return "arm64" if instance_type.split(".")[0] in ARM64_FAMILIES else "x86_64"


def instance_type_problem(instance_type: str, architecture: str) -> str | None:
    """Why AWS would refuse (or the image could not boot on) this type, in words, or None."""
    known, source = ec2_instance_types()
    if instance_type not in known:
        near = difflib.get_close_matches(instance_type, known, n=1)
        return (
            f"not an EC2 instance type{f' (did you mean {near[0]!r}?)' if near else ''}; checked against "
            f"{source}, so a type newer than that needs a newer pulumi-aws"
        )
    if instance_type.startswith("mac"):
        return "Mac instances run on dedicated hosts only, which an Auto Scaling group cannot launch"
    if (found := instance_type_architecture(instance_type)) != architecture:
        return (
            f"an {found} type while instances.architecture is {architecture} (the image's): "
            f"choose a {architecture} type or set instances.architecture: {found}"
        )
    return None


# The target group's deregistration_delay.timeout_seconds: 0 to 3600 (ELB's target group attributes).
MAX_DEREGISTRATION_DELAY_SECONDS = 3600


def _across_sections(sections: dict[str, Any], region: str | None) -> list[str]:
    """Rules that join two sections (or a section and the region)."""
    problems = []
    app, instances, network, web = sections["app"], sections["instances"], sections["network"], sections["web"]
    for role, role_settings in (("web", web), ("worker", sections["worker"])):
        if problem := instance_type_problem(role_settings.instance_type, instances.architecture):
            problems.append(f"{role}.instanceType: got {role_settings.instance_type!r}; {problem}")
    load_balancer: LoadBalancerSettings = sections["loadBalancer"]
    if sections["security"].protect and not sections["alerts"].emails:
        problems.append(
            "alerts.emails: empty while security.protect is true; a protected stack's alarms and "
            "broker events would reach nobody: list at least one address (each confirms by mail)"
        )
    if app.source == "ami" and not instances.ami_id:
        problems.append("instances.amiId: required when app.source is 'ami' (the AMI carries the release)")
    if load_balancer.enabled:
        if web.gunicorn_timeout + GUNICORN_GRACE_SECONDS > MAX_DEREGISTRATION_DELAY_SECONDS:
            problems.append(
                f"web.gunicornTimeout: got {web.gunicorn_timeout}; at most "
                f"{MAX_DEREGISTRATION_DELAY_SECONDS - GUNICORN_GRACE_SECONDS}: the load balancer drains an instance "
                f"for gunicornTimeout + {GUNICORN_GRACE_SECONDS} s and allows at most "
                f"{MAX_DEREGISTRATION_DELAY_SECONDS} s"
            )
        if load_balancer.certificate_region and load_balancer.certificate_region != region:
            problems.append(
                f"loadBalancer.certificateArn: a certificate in {load_balancer.certificate_region}; "
                f"an ALB in {region} needs one from ACM in {region}"
            )
        if network.vpc_id and not network.public_subnet_ids:
            problems.append(
                "network.publicSubnetIds: required with vpcId while loadBalancer.enabled is true "
                "(the internet-facing load balancer's subnets)"
            )
        for key in ("targetGroupArns", "ingressCidrs", "ingressSecurityGroupIds"):
            if getattr(web, _snake(key)):
                problems.append(
                    f"web.{key}: only with loadBalancer.enabled false; "
                    "the stack's load balancer is then the web group's only ingress and target"
                )
    database: DatabaseSettings = sections["database"]
    problems += _rds_problems(database, sections["security"].protect, app)
    if database.mode == "existing" and not set(DATABASE_SECRET_NAMES) & set(app.secret_parameters):
        problems.append(
            "app.secretParameters: database.mode 'existing' needs the connection here, from a SecureString you "
            f"create: DATABASE_URL (postgres://user:password@host:{database.database_port}/name), or its password "
            "as DATABASE_PASSWORD or PGPASSWORD"
        )
    return problems


def _rds_problems(database: DatabaseSettings, protect: bool, app: AppSettings) -> list[str]:
    """A database the stack creates: what security.protect asks of it, and its connection is the stack's."""
    if database.mode != "rds":
        return []
    problems = []
    if protect and not database.rds_multi_az:
        problems.append(
            "database.multiAz: false while security.protect is true; a protected stack's database keeps a "
            "standby in a second zone: set multiAz: true (or security.protect: false for a test stack)"
        )
    if protect and database.rds_backup_retention_days < PROTECTED_BACKUP_RETENTION_DAYS:
        problems.append(
            f"database.backupRetentionDays: got {database.rds_backup_retention_days} while security.protect is "
            f"true; a protected stack keeps at least {PROTECTED_BACKUP_RETENTION_DAYS} days of backups"
        )
    if taken := sorted(set(DATABASE_SECRET_NAMES) & set(app.secret_parameters)):
        problems.append(
            f"app.secretParameters.{taken[0]}: database.mode 'rds' composes the connection at boot from the "
            "database's own secret; remove it"
        )
    return problems
