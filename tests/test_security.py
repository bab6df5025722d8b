"""Security groups: Redis only from the app hosts by group reference, no SSH, no world ingress."""

from __future__ import annotations

from components.security import SecurityArgs, SecurityGroups
from offline_render.fake_aws import mock_id
from tests.conftest import of_type

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


def test_no_ssh_and_no_ingress_from_anywhere(prod):
    for rule in rules(prod, INGRESS):
        assert not rule["fromPort"] <= 22 <= rule["toPort"]
        assert rule.get("cidrIpv4") != "0.0.0.0/0"
        assert "cidrIpv6" not in rule
    for group in prod.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in group.inputs and "egress" not in group.inputs  # no inline rules


def test_web_ingress_is_exactly_what_config_names(prod, render):
    web_in = [r for r in rules(prod, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-web")]
    assert [(r["cidrIpv4"], r["fromPort"]) for r in web_in] == [("10.40.0.0/16", 8000)]
    with_lb = render({"web.ingressCidrs": [], "web.ingressSecurityGroupIds": ["sg-0123456789abcdef0"]})
    web_in = [r for r in rules(with_lb, INGRESS) if r["securityGroupId"] == mock_id("sg", "prod-web")]
    assert [(r["referencedSecurityGroupId"], r["fromPort"]) for r in web_in] == [("sg-0123456789abcdef0", 8000)]
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
