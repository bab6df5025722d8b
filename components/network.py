"""The network: an existing VPC's private subnets, or a new VPC spread over several AZs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from settings import NetworkSettings


@dataclass(frozen=True)
class NetworkArgs:
    settings: NetworkSettings
    region: str
    tags: dict[str, str]


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
        settings = args.settings
        if settings.vpc_id:
            self.vpc_id = pulumi.Output.from_input(settings.vpc_id)
            self.private_subnet_ids = [pulumi.Output.from_input(s) for s in settings.private_subnet_ids]
        else:
            self._create_vpc(name, args)
        self.register_outputs({"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids})

    def _create_vpc(self, name: str, args: NetworkArgs) -> None:
        settings, tags = args.settings, args.tags
        child = pulumi.ResourceOptions(parent=self)
        # Asked before the first subnet (a plain invoke, answered in previews too) so a count the
        # region cannot meet stops the program with one line instead of failing inside an apply.
        available = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        zone_names = pick_zones(list(available), settings.availability_zones, args.region)
        # /20s out of the VPC: the first block of AZ-count for private subnets, a later one for
        # the small public subnets that only hold NAT gateways.
        blocks = list(settings.vpc_network.subnets(new_prefix=settings.vpc_network.prefixlen + 4))

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=settings.vpc_cidr,
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
                cidr_block=str(blocks[8 + index]),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-public-{index}", "Tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            # One NAT gateway keeps a small stack cheap; perAz survives the loss of a zone.
            if index == 0 or settings.nat_gateways == "perAz":
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
                cidr_block=str(blocks[index]),
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
