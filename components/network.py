"""The network: an existing VPC's private subnets, or a new VPC spread over several AZs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.planning import plan_subnets


@dataclass(frozen=True)
class NetworkArgs:
    """An existing VPC (vpc_id and its private_subnet_ids), or a new one: vpc_cidr spread over
    availability_zones, with one NAT gateway (`single`) or one per zone (`perAz`)."""

    vpc_id: str | None
    private_subnet_ids: Sequence[str]
    vpc_cidr: str
    availability_zones: int
    nat_gateways: Literal["single", "perAz"]
    region: str
    tags: dict[str, str]

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
            f"django-stack:network.availabilityZones: {wanted} requested; {region} has only "
            f"{len(available)} available ({', '.join(available)}); use 2 to {len(available)}"
        )
    return available[:wanted]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:network:Network", name, None, opts)
        if args.vpc_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.private_subnet_ids = [pulumi.Output.from_input(s) for s in args.private_subnet_ids]
        else:
            self._create_vpc(name, args)
        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids})

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
            private_route_tables.append(routes)

        # Release artifacts come from S3: a gateway endpoint keeps that traffic off the NAT
        # gateway (no per-GB charge) and inside AWS's network.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_route_tables],
            tags=tags,
            opts=child,
        )
        self.vpc_id = vpc.id
        self.private_subnet_ids = [subnet.id for subnet in private_subnets]
