"""Security groups: Redis only from the app hosts by group reference, no SSH, the internet only to
the load balancer's 80 and 443, the web hosts only from the load balancer."""

from __future__ import annotations

from components.security import SecurityArgs, SecurityGroups
from offline_render.fake_aws import mock_id
from tests.conftest import SMALL, of_type

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def rules(render, type_):
    return [r.inputs for r in render.of_type(type_)]


def test_redis_accepts_6379_only_from_web_and_worker_groups(prod):
    to_redis = [r for r in rules(prod, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-redis")]
    assert sorted(r["referencedSecurityGroupId"] for r in to_redis) == sorted(
        [mock_id("sg", "prod-web"), mock_id("sg", "prod-worker")]
    )
    for rule in to_redis:
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 6379, 6379)
        assert "cidrIpv4" not in rule and "cidrIpv6" not in rule


def test_no_ssh_and_the_internet_reaches_only_the_load_balancer_on_80_and_443(prod):
    world = []
    for rule in rules(prod, INGRESS):
        assert not rule["fromPort"] <= 22 <= rule["toPort"]
        assert "cidrIpv6" not in rule
        if rule.get("cidrIpv4") == "0.0.0.0/0":
            world.append((rule["securityGroupId"], rule["ipProtocol"], rule["fromPort"], rule["toPort"]))
    alb = mock_id("sg", "prod-alb")
    assert sorted(world) == [(alb, "tcp", 80, 80), (alb, "tcp", 443, 443)]
    for group in prod.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in group.inputs and "egress" not in group.inputs  # no inline rules


def test_web_hosts_accept_the_app_port_only_from_the_load_balancer(prod):
    web_in = [r for r in rules(prod, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-web")]
    assert [(r["referencedSecurityGroupId"], r["fromPort"], r["toPort"]) for r in web_in] == [
        (mock_id("sg", "prod-alb"), 8000, 8000)
    ]
    assert all("cidrIpv4" not in r for r in web_in)
    alb_out = [r for r in rules(prod, EGRESS) if r["securityGroupId"] == mock_id("sg", "prod-alb")]
    assert [(r["referencedSecurityGroupId"], r["fromPort"]) for r in alb_out] == [(mock_id("sg", "prod-web"), 8000)]


def test_without_the_load_balancer_web_ingress_is_exactly_what_config_names(render):
    own = render(SMALL)
    web_in = [r for r in rules(own, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-web")]
    assert sorted((r.get("cidrIpv4") or r["referencedSecurityGroupId"], r["fromPort"]) for r in web_in) == [
        ("10.40.0.0/16", 8000),
        ("sg-0123456789abcdef0", 8000),
    ]
    assert mock_id("sg", "prod-alb") not in {r["securityGroupId"] for r in rules(own, INGRESS)}


def test_worker_hosts_accept_nothing(prod):
    worker_in = [r for r in rules(prod, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-worker")]
    assert worker_in == []


def test_app_hosts_reach_out_only_to_redis_https_and_http(prod):
    for role in ("web", "worker"):
        out = [r for r in rules(prod, EGRESS) if r["securityGroupId"] == mock_id("sg", f"prod-{role}")]
        assert sorted((r["fromPort"], r.get("cidrIpv4") or r["referencedSecurityGroupId"]) for r in out) == [
            (80, "0.0.0.0/0"),
            (443, "0.0.0.0/0"),
            (6379, mock_id("sg", "prod-redis")),
        ]
    assert not [r for r in rules(prod, EGRESS) if r["securityGroupId"] == mock_id("sg", "prod-redis")]


def test_security_groups_alone_open_the_web_port_only_to_the_named_sources(build_alone):
    args = SecurityArgs(
        vpc_id="vpc-0123456789abcdef0",
        web_port=8080,
        load_balancer=False,
        web_ingress_cidrs=["10.1.0.0/16"],
        web_ingress_security_group_ids=["sg-0123456789abcdef0"],
        tags={"Stack": "t"},
    )
    resources = build_alone(lambda: SecurityGroups("t", args))
    web_ingress = [
        r.inputs for r in of_type(resources, INGRESS) if r.inputs["securityGroupId"] == mock_id("sg", "t-web")
    ]
    peers = {(r["fromPort"], r["toPort"], r.get("cidrIpv4") or r.get("referencedSecurityGroupId")) for r in web_ingress}
    assert peers == {(8080, 8080, "10.1.0.0/16"), (8080, 8080, "sg-0123456789abcdef0")}
    assert len(web_ingress) == 2
    groups = of_type(resources, "aws:ec2/securityGroup:SecurityGroup")
    assert {g.inputs["vpcId"] for g in groups} == {"vpc-0123456789abcdef0"} and len(groups) == 3


def test_security_groups_alone_with_a_load_balancer_give_it_the_only_world_ingress(build_alone):
    args = SecurityArgs(
        vpc_id="vpc-0123456789abcdef0",
        web_port=8080,
        load_balancer=True,
        web_ingress_cidrs=[],
        web_ingress_security_group_ids=[],
        tags={"Stack": "t"},
    )
    ingress = [r.inputs for r in of_type(build_alone(lambda: SecurityGroups("t", args)), INGRESS)]
    world = {(r["securityGroupId"], r["fromPort"]) for r in ingress if r.get("cidrIpv4") == "0.0.0.0/0"}
    assert world == {(mock_id("sg", "t-alb"), 80), (mock_id("sg", "t-alb"), 443)}
    web = [
        (r["referencedSecurityGroupId"], r["fromPort"])
        for r in ingress
        if r["securityGroupId"] == mock_id("sg", "t-web")
    ]
    assert web == [(mock_id("sg", "t-alb"), 8080)]
