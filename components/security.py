"""Security groups: Redis reachable only from the web and worker hosts, nothing reachable by SSH,
and the load balancer's group the only one the internet reaches (80 and 443). The app's database,
when the stack names one, is reached on its port at exactly the group or networks named.

Rules are separate resources (aws.vpc.SecurityGroup*Rule), one per port and source, so each one
is visible in a preview and a policy can judge it alone. Instances are reached with SSM Session
Manager, which needs no ingress at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

REDIS_PORT = 6379
ANYWHERE = "0.0.0.0/0"
# The only egress to 0.0.0.0/0, each needed and why (through the NAT gateway; S3 through the
# gateway endpoint, whose policy limits it to the release prefix and the SSM agent's buckets):
# - 443: the public endpoints of SSM (the agent: ssm, ssmmessages, ec2messages; app-fetch-secrets:
#   Parameter Store), KMS (decrypting through SSM), S3 and Auto Scaling (app-warm-stop). Their
#   addresses are AWS's public ranges and change, so no narrower CIDR exists; interface VPC
#   endpoints for ssm, ssmmessages, ec2messages, kms and autoscaling (about 7 USD a month each
#   per AZ) would make this rule unnecessary and the NAT gateway optional: a stack that needs no
#   internet access at all should add them.
# - 80: Debian's mirrors and security updates (deb.debian.org, security.debian.org: a CDN, not
#   S3); apt verifies every package by its signed Release file, so plain HTTP carries no trust.
OUTBOUND_PORTS = {
    443: "HTTPS: SSM, ssmmessages, ec2messages, Parameter Store, KMS, S3, Auto Scaling (AWS public endpoints)",
    80: "HTTP: Debian mirrors and security updates (apt checks signatures)",
}
# The load balancer's listeners: HTTPS, and HTTP only to be redirected to HTTPS.
LISTENER_PORTS = {443: "HTTPS from the internet", 80: "HTTP from the internet (redirected to HTTPS)"}


@dataclass(frozen=True)
class DatabasePeer:
    """Where the app's database listens: the web and worker hosts may connect to this port at
    this security group and/or these CIDRs, nothing else."""

    port: int
    security_group_id: pulumi.Input[str] | None = None
    cidrs: Sequence[str] = ()
    # The group is the stack's to change: it admits the web and worker hosts on the port.
    manage_ingress: bool = False

    def __post_init__(self) -> None:
        if self.security_group_id is None and not self.cidrs:
            raise ValueError("DatabasePeer: a security_group_id and/or cidrs")
        if self.manage_ingress and self.security_group_id is None:
            raise ValueError("DatabasePeer: manage_ingress needs security_group_id")


@dataclass(frozen=True)
class SecurityArgs:
    vpc_id: pulumi.Input[str]
    web_port: int
    # A group for the stack's load balancer: open to the internet on 80/443, and the web
    # role's ingress to web_port.
    load_balancer: bool
    # The web role's other ingress (a load balancer of the user's own): these CIDRs and groups.
    web_ingress_cidrs: Sequence[str]
    web_ingress_security_group_ids: Sequence[pulumi.Input[str]]
    tags: dict[str, str]
    database: DatabasePeer | None = None


class SecurityGroups(pulumi.ComponentResource):
    web_security_group_id: pulumi.Output[str]
    worker_security_group_id: pulumi.Output[str]
    redis_security_group_id: pulumi.Output[str]
    load_balancer_security_group_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: SecurityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:security:SecurityGroups", name, None, opts)
        web = self._group(f"{name}-web", "web hosts (gunicorn)", args)
        worker = self._group(f"{name}-worker", "worker hosts (Celery)", args)
        redis = self._group(f"{name}-redis", "ElastiCache Redis: 6379 from web and worker hosts only", args)

        for role, group in (("web", web), ("worker", worker)):
            self._rule(
                aws.vpc.SecurityGroupIngressRule,
                f"{name}-redis-from-{role}",
                redis,
                REDIS_PORT,
                f"Redis from {role} hosts",
                args,
                source=group.id,
            )
            self._rule(
                aws.vpc.SecurityGroupEgressRule,
                f"{name}-{role}-to-redis",
                group,
                REDIS_PORT,
                "Redis (TLS)",
                args,
                source=redis.id,
            )
            for port, why in OUTBOUND_PORTS.items():
                self._rule(
                    aws.vpc.SecurityGroupEgressRule, f"{name}-{role}-out-{port}", group, port, why, args, cidr=ANYWHERE
                )
            if args.database:
                self._database_rules(name, role, group, args.database, args)

        port = args.web_port
        self.load_balancer_security_group_id = None
        if args.load_balancer:
            front = self._group(f"{name}-alb", "load balancer: 80/443 from the internet, to the web hosts", args)
            for listener_port, why in LISTENER_PORTS.items():
                self._rule(
                    aws.vpc.SecurityGroupIngressRule,
                    f"{name}-alb-in-{listener_port}",
                    front,
                    listener_port,
                    why,
                    args,
                    cidr=ANYWHERE,
                )
            self._rule(
                aws.vpc.SecurityGroupEgressRule, f"{name}-alb-to-web", front, port, "gunicorn", args, source=web.id
            )
            self._rule(
                aws.vpc.SecurityGroupIngressRule,
                f"{name}-web-from-alb",
                web,
                port,
                "gunicorn from the load balancer",
                args,
                source=front.id,
            )
            self.load_balancer_security_group_id = front.id

        # Without the stack's load balancer: the gunicorn port, from what the stack names explicitly.
        for index, cidr in enumerate(args.web_ingress_cidrs):
            self._rule(
                aws.vpc.SecurityGroupIngressRule,
                f"{name}-web-in-cidr-{index}",
                web,
                port,
                "gunicorn from web.ingressCidrs",
                args,
                cidr=str(cidr),
            )
        for index, source in enumerate(args.web_ingress_security_group_ids):
            self._rule(
                aws.vpc.SecurityGroupIngressRule,
                f"{name}-web-in-sg-{index}",
                web,
                port,
                "gunicorn from web.ingressSecurityGroupIds (load balancer)",
                args,
                source=source,
            )

        self.web_security_group_id = web.id
        self.worker_security_group_id = worker.id
        self.redis_security_group_id = redis.id
        self.register_outputs(
            {
                "webSecurityGroupId": web.id,
                "workerSecurityGroupId": worker.id,
                "redisSecurityGroupId": redis.id,
                "loadBalancerSecurityGroupId": self.load_balancer_security_group_id,
            }
        )

    def _database_rules(
        self, name: str, role: str, group: aws.ec2.SecurityGroup, database: DatabasePeer, args: SecurityArgs
    ) -> None:
        """The role's egress to the database, and its ingress there when the group is the stack's to change."""
        port = database.port
        if database.security_group_id is not None:
            self._rule(
                aws.vpc.SecurityGroupEgressRule,
                f"{name}-{role}-to-database",
                group,
                port,
                "the app's database",
                args,
                source=database.security_group_id,
            )
        for index, cidr in enumerate(database.cidrs):
            self._rule(
                aws.vpc.SecurityGroupEgressRule,
                f"{name}-{role}-to-database-{index}",
                group,
                port,
                "the app's database",
                args,
                cidr=str(cidr),
            )
        if database.manage_ingress and database.security_group_id is not None:
            self._rule(
                aws.vpc.SecurityGroupIngressRule,
                f"{name}-database-from-{role}",
                database.security_group_id,
                port,
                f"the app's database from {role} hosts",
                args,
                source=group.id,
            )

    def _group(self, resource_name: str, description: str, args: SecurityArgs) -> aws.ec2.SecurityGroup:
        # No inline rules: inline and separate rules on one group fight over its rule set.
        return aws.ec2.SecurityGroup(
            resource_name,
            vpc_id=args.vpc_id,
            description=description,
            tags={**args.tags, "Name": resource_name},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(
        self,
        kind: type[aws.vpc.SecurityGroupIngressRule] | type[aws.vpc.SecurityGroupEgressRule],
        resource_name: str,
        group: aws.ec2.SecurityGroup | pulumi.Input[str],
        port: int,
        description: str,
        args: SecurityArgs,
        *,
        cidr: str | None = None,
        source: pulumi.Input[str] | None = None,
    ) -> None:
        """One TCP port, one peer: a CIDR or another security group, never both. The rule goes on
        `group`: one of the stack's, or a group of the user's by id (the database's)."""
        kind(
            resource_name,
            security_group_id=group.id if isinstance(group, aws.ec2.SecurityGroup) else group,
            cidr_ipv4=cidr,
            referenced_security_group_id=source,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            description=description,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
