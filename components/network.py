"""The network: an existing VPC's subnets, or a new VPC spread over several AZs.

Instances and Redis live in the private subnets; only the load balancer uses the public ones.
A new VPC gets the baseline an existing one is expected to have already: flow logs to CloudWatch
Logs, a default security group without rules, and an S3 endpoint that reaches only the buckets
the instances read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components.access import release_artifacts_arns
from components.planning import plan_subnets


@dataclass(frozen=True)
class NetworkArgs:
    """An existing VPC (vpc_id, its private_subnet_ids and, for a load balancer, its
    public_subnet_ids), or a new one: vpc_cidr spread over availability_zones, with one NAT
    gateway (`single`) or one per zone (`perAz`)."""

    vpc_id: str | None
    private_subnet_ids: Sequence[str]
    vpc_cidr: str
    availability_zones: int
    nat_gateways: Literal["single", "perAz"]
    region: str
    account_id: pulumi.Input[str]
    flow_log_retention_days: int
    # Encrypts the flow log group.
    kms_key_arn: pulumi.Input[str]
    # "bucket/prefix" of the release artifacts (None: the AMI carries the release): the S3
    # endpoint lets the instances read these and nothing else of S3 beyond the SSM agent's.
    artifact_location: str | None
    tags: dict[str, str]
    public_subnet_ids: Sequence[str] = ()
    # The instances install AWS's CloudWatch agent at boot: they may read its bucket too.
    log_agent_bucket: bool = False
    # The region's partition: the policies' ARNs start with arn:<partition>.
    partition: str = "aws"

    def __post_init__(self) -> None:
        if self.vpc_id and not self.private_subnet_ids:
            raise ValueError("private_subnet_ids: empty; an existing VPC needs its private subnets")
        if self.nat_gateways not in ("single", "perAz"):
            raise ValueError(f"nat_gateways: {self.nat_gateways!r}; allowed: single, perAz")


def pick_zones(available: list[str], wanted: int, region: str) -> list[str]:
    """The first `wanted` zones, or an error that names the config key: how many zones a region
    has is only known once AWS answers."""
    if wanted > len(available):
        raise pulumi.RunError(
            f"network.availabilityZones: {wanted} requested; {region} has only "
            f"{len(available)} available ({', '.join(available)}); use 2 to {len(available)}"
        )
    return available[:wanted]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:network:Network", name, None, opts)
        if args.vpc_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.private_subnet_ids = [pulumi.Output.from_input(s) for s in args.private_subnet_ids]
            self.public_subnet_ids = [pulumi.Output.from_input(s) for s in args.public_subnet_ids]
        else:
            self._create_vpc(name, args)
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    def _create_vpc(self, name: str, args: NetworkArgs) -> None:
        tags = args.tags
        child = pulumi.ResourceOptions(parent=self)
        # Asked before the first subnet (a plain invoke, answered in previews too) so a count the
        # region cannot meet stops the program with one line instead of failing inside an apply.
        available = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        zone_names = pick_zones(list(available), args.availability_zones, args.region)
        plan = plan_subnets(args.vpc_cidr, args.availability_zones)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags={**tags, "Name": f"{name}-public"},
            opts=child,
        )

        nat_ids: list[pulumi.Output[str]] = []
        private_subnets: list[aws.ec2.Subnet] = []
        public_subnets: list[aws.ec2.Subnet] = []
        private_route_tables: list[aws.ec2.RouteTable] = []
        for index, zone in enumerate(zone_names):
            public = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=vpc.id,
                cidr_block=plan.public[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-public-{index}", "Tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            # One NAT gateway keeps a small stack cheap; perAz survives the loss of a zone.
            if index == 0 or args.nat_gateways == "perAz":
                address = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc", tags=tags, opts=child)
                nat = aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    subnet_id=public.id,
                    allocation_id=address.id,
                    tags={**tags, "Name": f"{name}-nat-{index}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
                nat_ids.append(nat.id)
            private = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                cidr_block=plan.private[index],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-private-{index}", "Tier": "private"},
                opts=child,
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat_ids[-1]}],
                tags={**tags, "Name": f"{name}-private-{index}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=private.id, route_table_id=routes.id, opts=child
            )
            private_subnets.append(private)
            public_subnets.append(public)
            private_route_tables.append(routes)

        # Release artifacts come from S3: a gateway endpoint keeps that traffic off the NAT
        # gateway (no per-GB charge) and inside AWS's network.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_route_tables],
            policy=json.dumps(
                s3_endpoint_policy(args.region, args.partition, args.artifact_location, args.log_agent_bucket),
                sort_keys=True,
            ),
            tags=tags,
            opts=child,
        )
        # Adopting the default group strips every rule from it (AWS creates it allowing all
        # traffic between its members and all egress): nothing may use it by accident.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-default (no rules)"}, opts=child
        )
        self._flow_logs(name, vpc, args)
        self.vpc_id = vpc.id
        self.private_subnet_ids = [subnet.id for subnet in private_subnets]
        self.public_subnet_ids = [subnet.id for subnet in public_subnets]

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs) -> None:
        """Every accepted and rejected connection in the VPC, to an encrypted log group."""
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            description="VPC flow logs delivery to CloudWatch Logs",
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(_flow_logs_trust(args.partition, args.region, account), sort_keys=True)
            ),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=log_group.arn.apply(lambda arn: json.dumps(_flow_logs_delivery(arn), sort_keys=True)),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            tags=args.tags,
            opts=child,
        )


# The SSM agent's own buckets (Systems Manager guide, "SSM Agent communications with AWS managed
# S3 buckets"): amazon-ssm-<region> carries the agent package (installed at first boot) and its
# updates, aws-ssm-<region> the documents and plugins it fetches. Debian's mirrors and security
# updates are not S3 (a CDN, reached through the NAT gateway), so this policy does not touch them.
SSM_AGENT_BUCKETS = ("amazon-ssm-{region}", "aws-ssm-{region}")
# The CloudWatch agent's package, its signature and its signing key (CloudWatch guide, "Download
# the CloudWatch agent package"); the running agent reads nothing from S3.
CLOUDWATCH_AGENT_BUCKET = "amazoncloudwatch-agent-{region}"


def s3_endpoint_policy(
    region: str, partition: str, artifact_location: str | None, log_agent_bucket: bool = False
) -> dict[str, Any]:
    """Reads of the release artifacts and the agents' buckets; any other S3 request from the
    private subnets is refused at the endpoint, whatever credentials make it."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "SsmAgentBuckets",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": [f"arn:{partition}:s3:::{bucket.format(region=region)}/*" for bucket in SSM_AGENT_BUCKETS],
        }
    ]
    if log_agent_bucket:
        statements.append(
            {
                "Sid": "CloudWatchAgentBucket",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:{partition}:s3:::{CLOUDWATCH_AGENT_BUCKET.format(region=region)}/*",
            }
        )
    if artifact_location:
        statements.append(
            {
                "Sid": "ReleaseArtifacts",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": release_artifacts_arns(artifact_location, partition),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _flow_logs_trust(partition: str, region: str, account: str) -> dict[str, Any]:
    # The confused-deputy conditions AWS documents for the flow logs service.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account}:vpc-flow-log/*"},
                },
            }
        ],
    }


def _flow_logs_delivery(log_group_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteFlowLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": f"{log_group_arn}:*",
            },
            {"Sid": "FindTheLogGroup", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"},
        ],
    }
