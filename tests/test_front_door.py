"""The front door: an internet-facing ALB, HTTPS with a modern policy, HTTP redirected, the health
check on the configured path, deregistration tied to gunicorn, the certificate and DNS."""

from __future__ import annotations

import pytest

from components.front_door import TLS_POLICY, FrontDoorArgs
from offline_render.fake_aws import mock_id
from tests.conftest import GIVEN_CERTIFICATE, GIVEN_CERTIFICATE_ARN, SMALL, named, only

LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"
RECORD = "aws:route53/record:Record"
CERTIFICATE = "aws:acm/certificate:Certificate"
# prod with the front door's keys these tests read moved off their defaults, rendered once for all
# of them (a render is ~0.2 s of the unit lane's CPU); each test checks only its own keys' effect.
TUNED = {
    "loadBalancer.healthCheckPath": "/ready",
    "loadBalancer.accessLogsBucket": "example-alb-logs",
    "loadBalancer.accessLogsPrefix": "prod",
    "web.gunicornTimeout": 90,
}


def listener(render, protocol: str) -> dict:
    (found,) = [r.inputs for r in render.of_type(LISTENER) if r.inputs["protocol"] == protocol]
    return found


def test_an_internet_facing_alb_behind_the_load_balancer_group(prod):
    alb = only(prod, LOAD_BALANCER)
    assert alb["loadBalancerType"] == "application"
    assert alb["internal"] is False
    assert alb["securityGroups"] == [mock_id("sg", "prod-alb")]
    assert alb["dropInvalidHeaderFields"] is True
    assert "accessLogs" not in alb


def test_https_listener_uses_a_modern_tls_policy_and_forwards_to_the_web_targets(prod):
    https = listener(prod, "HTTPS")
    assert (https["port"], https["sslPolicy"]) == (443, "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09")
    assert TLS_POLICY == https["sslPolicy"]
    (action,) = https["defaultActions"]
    assert action["type"] == "forward"
    assert action["targetGroupArn"].startswith(
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/prod-web/"
    )


def test_http_only_redirects_to_https(prod):
    http = listener(prod, "HTTP")
    assert http["port"] == 80
    assert http["defaultActions"] == [
        {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}
    ]
    assert len(prod.of_type(LISTENER)) == 2


def test_health_check_path_comes_from_config_and_defaults_to_livez(prod, render):
    check = only(prod, TARGET_GROUP)["healthCheck"]
    assert (check["path"], check["matcher"], check["port"], check["protocol"]) == (
        "/livez",
        "200",
        "traffic-port",
        "HTTP",
    )
    assert only(render(TUNED), TARGET_GROUP)["healthCheck"]["path"] == "/ready"


def test_targets_are_the_gunicorn_port_and_drain_for_gunicorns_stop_timeout(prod, render):
    targets = only(prod, TARGET_GROUP)
    assert (targets["port"], targets["protocol"], targets["targetType"]) == (8000, "HTTP", "instance")
    # gunicornTimeout 30 + gunicorn's graceful timeout 30: what gunicorn.service waits on stop.
    assert targets["deregistrationDelay"] == 60
    assert only(render(TUNED), TARGET_GROUP)["deregistrationDelay"] == 120


def test_domain_gets_a_dns_validated_certificate_and_an_alias(prod):
    certificate = only(prod, CERTIFICATE)
    assert (certificate["domainName"], certificate["validationMethod"]) == ("app.example.com", "DNS")
    validation = named(prod, RECORD, "prod-certificate-validation")
    assert (validation["zoneId"], validation["type"]) == ("Z0123456789ABCDEFGHIJ", "CNAME")
    assert validation["records"] == ["_fedcba9876543210.acm-validations.aws."]
    waited = only(prod, "aws:acm/certificateValidation:CertificateValidation")
    assert waited["validationRecordFqdns"] == ["_0123456789abcdef.app.example.com"]
    # The listener takes the certificate once validated (CertificateValidation's output).
    assert (
        listener(prod, "HTTPS")["certificateArn"]
        == "arn:aws:acm:eu-west-1:123456789012:certificate/prod-certificate-id"
    )
    alias = named(prod, RECORD, "prod-alias")
    assert (alias["zoneId"], alias["name"], alias["type"]) == ("Z0123456789ABCDEFGHIJ", "app.example.com", "A")
    assert alias["aliases"] == [
        {
            "name": "prod-alb-1234567890.eu-west-1.elb.amazonaws.com",
            "zoneId": "Z32O12XQLNTSW2",
            "evaluateTargetHealth": True,
        }
    ]


def test_a_given_certificate_is_used_as_is_without_dns(render):
    stack = render(GIVEN_CERTIFICATE)
    assert listener(stack, "HTTPS")["certificateArn"] == GIVEN_CERTIFICATE_ARN
    assert stack.of_type(CERTIFICATE) == [] and stack.of_type(RECORD) == []


def test_access_logs_go_to_the_named_bucket(render):
    assert only(render(TUNED), LOAD_BALANCER)["accessLogs"] == {
        "bucket": "example-alb-logs",
        "prefix": "prod",
        "enabled": True,
    }


def test_outputs_are_the_albs_dns_name_and_the_sites_url(prod, render):
    assert prod.outputs["loadBalancerDnsName"] == "prod-alb-1234567890.eu-west-1.elb.amazonaws.com"
    assert prod.outputs["url"] == "https://app.example.com"
    # Without a domain of the program's own, the URL is the load balancer's name.
    given = render(GIVEN_CERTIFICATE)
    assert given.outputs["url"] == "https://prod-alb-1234567890.eu-west-1.elb.amazonaws.com"


def test_disabled_keeps_no_load_balancer_and_no_internet_ingress(render):
    stack = render(SMALL)
    for type_ in (LOAD_BALANCER, TARGET_GROUP, LISTENER, RECORD, CERTIFICATE):
        assert stack.of_type(type_) == [], type_
    assert "url" not in stack.outputs and "loadBalancerDnsName" not in stack.outputs
    world = [
        r
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("cidrIpv4") == "0.0.0.0/0"
    ]
    assert world == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certificate_arn": None}, "certificate_arn: give it, or domain and hosted_zone_id"),
        ({"domain": "app.example.com", "hosted_zone_id": "Z0123"}, "certificate_arn: give it, or domain"),
        ({"health_check_path": "healthz"}, "health_check_path: 'healthz'; must start with /"),
        ({"public_subnet_ids": ["subnet-0123456789abcdef0"]}, "public_subnet_ids: an Application Load Balancer"),
    ],
)
def test_component_refuses_inconsistent_args(changes, message):
    arguments = {
        "vpc_id": "vpc-0123456789abcdef0",
        "public_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "security_group_id": "sg-0123456789abcdef0",
        "app_port": 8000,
        "health_check_path": "/healthz",
        "deregistration_delay_seconds": 60,
        "certificate_arn": GIVEN_CERTIFICATE_ARN,
        "domain": None,
        "hosted_zone_id": None,
        "access_logs_bucket": None,
        "access_logs_prefix": "",
        "tags": {},
    } | changes
    with pytest.raises(ValueError, match=message):
        FrontDoorArgs(**arguments)
