"""The front door: an internet-facing Application Load Balancer in the public subnets, HTTPS only
(HTTP answers with a redirect), forwarding to the web group's target group.

The certificate is the user's (`certificate_arn`) or issued here for `domain`, validated by DNS
in `hosted_zone_id`, which also gets the alias record pointing the domain at the load balancer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# AWS's recommended policy (the console's default since 2025-09): TLS 1.3 and 1.2, forward
# secrecy only, hybrid post-quantum key exchange for clients that offer it.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
HTTPS_PORT, HTTP_PORT = 443, 80


@dataclass(frozen=True)
class FrontDoorArgs:
    vpc_id: pulumi.Input[str]
    public_subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    # gunicorn's port on the web hosts, and the path the target group's health check requests.
    app_port: int
    health_check_path: str
    # How long a deregistering web host keeps its in-flight requests: its gunicorn's stop timeout.
    deregistration_delay_seconds: int
    # Either a certificate (ACM, in the load balancer's region), or a domain and its hosted zone.
    certificate_arn: str | None
    domain: str | None
    hosted_zone_id: str | None
    # "bucket" whose policy lets Elastic Load Balancing write; None: no access logs.
    access_logs_bucket: str | None
    access_logs_prefix: str
    tags: dict[str, str]

    def __post_init__(self) -> None:
        if bool(self.certificate_arn) == bool(self.domain and self.hosted_zone_id):
            raise ValueError("certificate_arn: give it, or domain and hosted_zone_id, exactly one of the two")
        if not self.health_check_path.startswith("/"):
            raise ValueError(f"health_check_path: {self.health_check_path!r}; must start with /")
        if len(self.public_subnet_ids) < 2:
            raise ValueError("public_subnet_ids: an Application Load Balancer needs subnets in at least 2 zones")


class FrontDoor(pulumi.ComponentResource):
    dns_name: pulumi.Output[str]
    url: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    arn: pulumi.Output[str]
    # How CloudWatch names the two in its metrics' dimensions.
    arn_suffix: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]

    def __init__(self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:frontdoor:FrontDoor", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        certificate_arn = args.certificate_arn or self._issued_certificate(name, args)

        balancer = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=list(args.public_subnet_ids),
            security_groups=[args.security_group_id],
            # Requests with malformed headers are dropped here, not passed on to Django.
            drop_invalid_header_fields=True,
            access_logs=(
                {"bucket": args.access_logs_bucket, "prefix": args.access_logs_prefix, "enabled": True}
                if args.access_logs_bucket
                else None
            ),
            tags=args.tags,
            opts=child,
        )
        targets = aws.lb.TargetGroup(
            f"{name}-web",
            vpc_id=args.vpc_id,
            target_type="instance",
            protocol="HTTP",
            port=args.app_port,
            deregistration_delay=args.deregistration_delay_seconds,
            health_check={
                "enabled": True,
                "protocol": "HTTP",
                "port": "traffic-port",
                "path": args.health_check_path,
                "matcher": "200",
                "interval": 15,
                "timeout": 6,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            tags=args.tags,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=balancer.arn,
            protocol="HTTPS",
            port=HTTPS_PORT,
            ssl_policy=TLS_POLICY,
            certificate_arn=certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": targets.arn}],
            tags=args.tags,
            opts=child,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=balancer.arn,
            protocol="HTTP",
            port=HTTP_PORT,
            default_actions=[
                {
                    "type": "redirect",
                    "redirect": {"protocol": "HTTPS", "port": str(HTTPS_PORT), "status_code": "HTTP_301"},
                }
            ],
            tags=args.tags,
            opts=child,
        )
        if args.domain and args.hosted_zone_id:
            aws.route53.Record(
                f"{name}-alias",
                zone_id=args.hosted_zone_id,
                name=args.domain,
                type="A",
                aliases=[{"name": balancer.dns_name, "zone_id": balancer.zone_id, "evaluate_target_health": True}],
                opts=child,
            )

        self.arn = balancer.arn
        self.dns_name = balancer.dns_name
        self.target_group_arn = targets.arn
        self.arn_suffix = balancer.arn_suffix
        self.target_group_arn_suffix = targets.arn_suffix
        self.url = (
            pulumi.Output.from_input(f"https://{args.domain}")
            if args.domain
            else balancer.dns_name.apply(lambda host: f"https://{host}")
        )
        self.register_outputs(
            {"dnsName": self.dns_name, "url": self.url, "targetGroupArn": self.target_group_arn, "arn": self.arn}
        )

    def _issued_certificate(self, name: str, args: FrontDoorArgs) -> pulumi.Output[str]:
        """An ACM certificate for the domain, validated by the DNS record ACM asks for."""
        child = pulumi.ResourceOptions(parent=self)
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=str(args.domain),
            validation_method="DNS",
            tags=args.tags,
            opts=child,
        )
        option = certificate.domain_validation_options[0]
        record = aws.route53.Record(
            f"{name}-certificate-validation",
            zone_id=str(args.hosted_zone_id),
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=child,
        )
        # The listener waits for ACM to issue the certificate.
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=child,
        )
        return validation.certificate_arn
