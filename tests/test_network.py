"""The network: a new VPC over two AZs with private subnets, or an existing VPC's subnets; a new
VPC's baseline: flow logs, a default security group without rules, an S3 endpoint policy."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.network import Network, NetworkArgs
from components.planning import plan_subnets
from offline_render.fake_aws import ACCOUNT, mock_id
from tests.conftest import TUNED_OPERATIONS, named, of_type, only


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
    assert len(render(TUNED_OPERATIONS).of_type("aws:ec2/natGateway:NatGateway")) == 1


def test_existing_vpc_creates_no_network_and_uses_its_subnets(render):
    stack = render(
        {
            "network": {
                "vpcId": "vpc-0123456789abcdef0",
                "privateSubnetIds": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
                "publicSubnetIds": ["subnet-0cccccccccccccccc", "subnet-0dddddddddddddddd"],
            }
        }
    )
    for kind in (
        "vpc:Vpc",
        "subnet:Subnet",
        "natGateway:NatGateway",
        "internetGateway:InternetGateway",
        "flowLog:FlowLog",
        "defaultSecurityGroup:DefaultSecurityGroup",
    ):
        assert stack.of_type(f"aws:ec2/{kind}") == []
    assert only(stack, "aws:elasticache/subnetGroup:SubnetGroup")["subnetIds"] == [
        "subnet-0aaaaaaaaaaaaaaaa",
        "subnet-0bbbbbbbbbbbbbbbb",
    ]
    assert {r.inputs["vpcId"] for r in stack.of_type("aws:ec2/securityGroup:SecurityGroup")} == {
        "vpc-0123456789abcdef0"
    }
    # The load balancer in the public subnets, the instances in the private ones.
    assert only(stack, "aws:lb/loadBalancer:LoadBalancer")["subnets"] == [
        "subnet-0cccccccccccccccc",
        "subnet-0dddddddddddddddd",
    ]
    for group in stack.of_type("aws:autoscaling/group:Group"):
        assert group.inputs["vpcZoneIdentifiers"] == ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]


def test_new_vpc_puts_the_load_balancer_in_its_public_subnets(prod):
    public = sorted(mock_id("subnet", f"prod-public-{index}") for index in range(2))
    assert sorted(only(prod, "aws:lb/loadBalancer:LoadBalancer")["subnets"]) == public
    for group in prod.of_type("aws:autoscaling/group:Group"):
        assert sorted(group.inputs["vpcZoneIdentifiers"]) == sorted(
            mock_id("subnet", f"prod-private-{index}") for index in range(2)
        )


def test_more_zones_than_the_region_has_is_one_line_naming_the_key(render):
    # The mock region has three zones, as eu-west-1 has.
    with pytest.raises(pulumi.RunError) as raised:
        render({"network.availabilityZones": 4})
    assert str(raised.value) == (
        "network.availabilityZones: 4 requested; eu-west-1 has only 3 available "
        "(eu-west-1a, eu-west-1b, eu-west-1c); use 2 to 3"
    )


def test_every_zone_the_region_has_can_be_used(render):
    private = [r.inputs for r in render(TUNED_OPERATIONS).of_type("aws:ec2/subnet:Subnet")]
    zones = sorted(s["availabilityZone"] for s in private if s["tags"]["Tier"] == "private")
    assert zones == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_flow_logs_record_all_traffic_to_an_encrypted_log_group_kept_as_configured(prod, render):
    flow_log = only(prod, "aws:ec2/flowLog:FlowLog")
    assert flow_log["vpcId"] == mock_id("vpc", "prod-vpc")
    assert (flow_log["trafficType"], flow_log["logDestinationType"]) == ("ALL", "cloud-watch-logs")
    group = named(prod, "aws:cloudwatch/logGroup:LogGroup", "prod-flow-logs")
    assert flow_log["logDestination"] == f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:prod-flow-logs"
    assert group["retentionInDays"] == 90 and group["kmsKeyId"].startswith("arn:aws:kms:eu-west-1:")
    longer = render(TUNED_OPERATIONS)
    assert named(longer, "aws:cloudwatch/logGroup:LogGroup", "prod-flow-logs")["retentionInDays"] == 365


def test_only_the_flow_logs_service_of_this_account_delivers_and_only_to_its_group(prod):
    trust = json.loads(named(prod, "aws:iam/role:Role", "prod-flow-logs")["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    delivery = json.loads(named(prod, "aws:iam/rolePolicy:RolePolicy", "prod-flow-logs")["policy"])
    writes = next(s for s in delivery["Statement"] if "logs:PutLogEvents" in s["Action"])
    assert writes["Resource"] == f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:prod-flow-logs:*"


@pytest.mark.parametrize("retention", [0, 13, 4000])
def test_a_retention_cloudwatch_does_not_offer_is_refused_before_any_resource(render, retention):
    with pytest.raises(Exception, match="invalid stack config") as raised:
        render({"security.flowLogRetentionDays": retention})
    (line,) = [line for line in str(raised.value).splitlines() if "flowLogRetentionDays" in line]
    assert f"got {retention}; CloudWatch Logs allows 1, 3, 5, 7, 14" in line


def test_the_default_security_group_is_adopted_without_rules(prod):
    default = only(prod, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default["vpcId"] == mock_id("vpc", "prod-vpc")
    assert not default.get("ingress") and not default.get("egress")


def test_the_s3_endpoint_reaches_only_the_release_prefix_and_the_agents_buckets(prod, render):
    policy = json.loads(only(prod, "aws:ec2/vpcEndpoint:VpcEndpoint")["policy"])
    allowed = {
        (action, resource)
        for statement in policy["Statement"]
        if statement["Effect"] == "Allow"
        for action in [statement["Action"]]
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
    }
    assert allowed == {
        ("s3:GetObject", "arn:aws:s3:::example-django-stack-releases/releases/*.tar.gz"),
        ("s3:GetObject", "arn:aws:s3:::example-django-stack-releases/releases/*.tar.gz.sha256"),
        ("s3:GetObject", "arn:aws:s3:::amazon-ssm-eu-west-1/*"),
        ("s3:GetObject", "arn:aws:s3:::aws-ssm-eu-west-1/*"),
        ("s3:GetObject", "arn:aws:s3:::amazoncloudwatch-agent-eu-west-1/*"),
    }
    from_ami = render({"app.source": "ami", "instances.amiId": "ami-0a1b2c3d4e5f67890", "logs.agent": "preinstalled"})
    statements = json.loads(only(from_ami, "aws:ec2/vpcEndpoint:VpcEndpoint")["policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["SsmAgentBuckets"]


KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"


def test_network_alone_plans_one_subnet_pair_and_nat_per_zone(build_alone):
    args = NetworkArgs(
        vpc_id=None,
        private_subnet_ids=(),
        vpc_cidr="10.8.0.0/18",
        availability_zones=3,
        nat_gateways="perAz",
        region="eu-west-1",
        account_id=ACCOUNT,
        flow_log_retention_days=30,
        kms_key_arn=KEY_ARN,
        artifact_location="bucket/releases/",
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
    (log_group,) = of_type(resources, "aws:cloudwatch/logGroup:LogGroup")
    assert (log_group.inputs["retentionInDays"], log_group.inputs["kmsKeyId"]) == (30, KEY_ARN)


def test_network_alone_over_an_existing_vpc_creates_nothing(build_alone):
    args = NetworkArgs(
        vpc_id="vpc-0123456789abcdef0",
        private_subnet_ids=("subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"),
        vpc_cidr="10.40.0.0/16",
        availability_zones=2,
        nat_gateways="single",
        region="eu-west-1",
        account_id=ACCOUNT,
        flow_log_retention_days=30,
        kms_key_arn=KEY_ARN,
        artifact_location=None,
        tags={},
        public_subnet_ids=("subnet-0cccccccccccccccc", "subnet-0dddddddddddddddd"),
    )
    resources = build_alone(lambda: Network("t", args))
    assert [r.type_ for r in resources] == ["djangostack:network:Network"]


def test_network_refuses_an_existing_vpc_without_subnets():
    with pytest.raises(ValueError, match="private_subnet_ids: empty"):
        NetworkArgs(
            "vpc-0123456789abcdef0", (), "10.40.0.0/16", 2, "single", "eu-west-1", ACCOUNT, 30, KEY_ARN, None, {}
        )
