"""The network: a new VPC over two AZs with private subnets, or an existing VPC's subnets."""

from __future__ import annotations

import pulumi
import pytest

from components.network import Network, NetworkArgs
from components.planning import plan_subnets
from tests.conftest import of_type, only


def test_new_vpc_spans_two_zones_with_private_subnets_and_nat(prod):
    assert only(prod, "aws:ec2/vpc:Vpc")["cidrBlock"] == "10.40.0.0/16"
    subnets = [r.inputs for r in prod.of_type("aws:ec2/subnet:Subnet")]
    private = [s for s in subnets if s["tags"]["Tier"] == "private"]
    assert sorted(s["availabilityZone"] for s in private) == ["eu-west-1a", "eu-west-1b"]
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets)
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 2  # perAz in prod
    endpoint = only(prod, "aws:ec2/vpcEndpoint:VpcEndpoint")
    assert (endpoint["serviceName"], endpoint["vpcEndpointType"]) == ("com.amazonaws.eu-west-1.s3", "Gateway")
    private_tables = [r.inputs for r in prod.of_type("aws:ec2/routeTable:RouteTable") if "private" in r.name]
    assert all("natGatewayId" in t["routes"][0] and "gatewayId" not in t["routes"][0] for t in private_tables)


def test_single_nat_gateway_when_configured(render):
    assert len(render({"network.natGateways": "single"}).of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_existing_vpc_creates_no_network_and_uses_its_subnets(render):
    stack = render(
        {
            "network": {
                "vpcId": "vpc-0123456789abcdef0",
                "privateSubnetIds": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
            }
        }
    )
    for kind in ("vpc:Vpc", "subnet:Subnet", "natGateway:NatGateway", "internetGateway:InternetGateway"):
        assert stack.of_type(f"aws:ec2/{kind}") == []
    assert only(stack, "aws:elasticache/subnetGroup:SubnetGroup")["subnetIds"] == [
        "subnet-0aaaaaaaaaaaaaaaa",
        "subnet-0bbbbbbbbbbbbbbbb",
    ]
    assert {r.inputs["vpcId"] for r in stack.of_type("aws:ec2/securityGroup:SecurityGroup")} == {
        "vpc-0123456789abcdef0"
    }


def test_more_zones_than_the_region_has_is_one_line_naming_the_key(render):
    # The mock region has three zones, as eu-west-1 has.
    with pytest.raises(pulumi.RunError) as raised:
        render({"network.availabilityZones": 4})
    assert str(raised.value) == (
        "django-stack:network.availabilityZones: 4 requested; eu-west-1 has only 3 available "
        "(eu-west-1a, eu-west-1b, eu-west-1c); use 2 to 3"
    )


def test_every_zone_the_region_has_can_be_used(render):
    private = [r.inputs for r in render({"network.availabilityZones": 3}).of_type("aws:ec2/subnet:Subnet")]
    zones = sorted(s["availabilityZone"] for s in private if s["tags"]["Tier"] == "private")
    assert zones == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_network_alone_plans_one_subnet_pair_and_nat_per_zone(build_alone):
    args = NetworkArgs(
        vpc_id=None,
        private_subnet_ids=(),
        vpc_cidr="10.8.0.0/18",
        availability_zones=3,
        nat_gateways="perAz",
        region="eu-west-1",
        tags={"Stack": "t"},
    )
    resources = build_alone(lambda: Network("t", args))
    subnets = {r.name: r.inputs for r in of_type(resources, "aws:ec2/subnet:Subnet")}
    plan = plan_subnets("10.8.0.0/18", 3)
    assert [subnets[f"t-private-{i}"]["cidrBlock"] for i in range(3)] == plan.private
    assert [subnets[f"t-public-{i}"]["cidrBlock"] for i in range(3)] == plan.public
    assert [subnets[f"t-private-{i}"]["availabilityZone"] for i in range(3)] == [f"eu-west-1{z}" for z in "abc"]
    assert len(of_type(resources, "aws:ec2/natGateway:NatGateway")) == 3
    (endpoint,) = of_type(resources, "aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["serviceName"] == "com.amazonaws.eu-west-1.s3"


def test_network_alone_over_an_existing_vpc_creates_nothing(build_alone):
    args = NetworkArgs(
        vpc_id="vpc-0123456789abcdef0",
        private_subnet_ids=("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"),
        vpc_cidr="10.40.0.0/16",
        availability_zones=2,
        nat_gateways="single",
        region="eu-west-1",
        tags={},
    )
    resources = build_alone(lambda: Network("t", args))
    assert [r.type_ for r in resources] == ["djangostack:network:Network"]


def test_network_refuses_an_existing_vpc_without_subnets():
    with pytest.raises(ValueError, match="private_subnet_ids: empty"):
        NetworkArgs("vpc-0123456789abcdef0", (), "10.40.0.0/16", 2, "single", "eu-west-1", {})
