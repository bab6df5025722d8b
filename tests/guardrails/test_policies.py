"""Every policy against a resource the program builds (passes) and one derived from it (violates).

The passing resources are the prod stack's, recorded by offline_render under Pulumi's mocks:
camelCase inputs, numbers as floats, secrets in the engine's wire form. Each violating case is
one of them with one input changed, so a test fails if a policy reads a field the program never
sets, or under another name.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.front_door import TLS_POLICY
from components.security import REDIS_PORT
from offline_render.program import StackRender
from offline_render.report import SECRET_SIG, SECRET_SIG_KEY
from ops.stack import program_project
from policy import rules
from userdata.layout import BEAT_TAG, QUEUE_BACKLOG_METRIC, metrics_namespace
from userdata.render import decode_user_data

Props = dict[str, Any]
# The stack every rendered resource here belongs to (the `prod` fixture's).
PROJECT = program_project()
PROD = rules.StackId(PROJECT, "prod")


def inputs_of(render: StackRender, name: str, resource_type: str | None = None) -> Props:
    found = [r for r in render.resources if r.name == name and resource_type in (None, r.type_)]
    assert len(found) == 1, f"no single resource named {name}"
    return copy.deepcopy(found[0].inputs)


def encode_user_data(document: str) -> str:
    return base64.b64encode(gzip.compress(document.encode(), mtime=0)).decode()


def with_user_data(props: Props, edit: Callable[[str], str]) -> Props:
    """A launch template's props with its (gzip+base64) user-data edited."""
    document = decode_user_data(props["userData"])
    changed = edit(document)
    assert changed != document, "the edit did not change the user-data"
    return {**props, "userData": encode_user_data(changed)}


def set_path(props: Props, path: str, value: Any) -> Props:
    """A copy with props[a][b]... = value; value None deletes the key."""
    changed = copy.deepcopy(props)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value
    return changed


def edited(props: Props, change: dict[str, Any]) -> Props:
    for path, value in change.items():
        props = set_path(props, path, value)
    return props


# --- the program's resources pass ----------------------------------------------------------------


def policy_problems(render: StackRender) -> dict[tuple[str, str], list[str]]:
    """(resource, policy) -> what the policy found, for each resource a policy refuses."""
    found = {
        (r.name, policy.name): policy.check(r.type_, r.inputs, PROD)
        for r in render.resources
        for policy in rules.RESOURCE_POLICIES
    }
    return {key: problems for key, problems in found.items() if problems}


def test_every_prod_resource_passes_every_policy(prod: StackRender) -> None:
    assert policy_problems(prod) == {}
    for policy in rules.STACK_POLICIES:
        assert policy.check([(r.type_, r.name, r.inputs) for r in prod.resources], PROD) == [], policy.name


def test_a_valkey_stack_passes_every_policy(render: Callable[..., StackRender]) -> None:
    valkey = render({"redis.engine": "valkey", "redis.engineVersion": "8.1"})
    assert policy_problems(valkey) == {}
    assert {r.inputs["engine"] for r in valkey.of_type(rules.REPLICATION_GROUP)} == {"valkey"}


def test_the_pack_judges_the_resource_types_the_program_creates(prod: StackRender) -> None:
    # Guards against a provider upgrade renaming a type token: the policies would then pass
    # everything silently.
    types = {r.type_ for r in prod.resources}
    assert {
        rules.LAUNCH_TEMPLATE,
        rules.AUTOSCALING_GROUP,
        rules.REPLICATION_GROUP,
        rules.SECURITY_GROUP,
        rules.INGRESS_RULE,
        rules.DEFAULT_SECURITY_GROUP,
        rules.ROLE,
        rules.ROLE_POLICY,
        rules.PARAMETER,
        rules.LOG_GROUP,
        rules.METRIC_ALARM,
    } <= types
    assert types & rules.LISTENERS


def test_policy_constants_match_the_program() -> None:
    assert rules.BEAT_TAG == BEAT_TAG
    assert rules.QUEUE_BACKLOG_METRIC_NAME == QUEUE_BACKLOG_METRIC
    assert rules.StackId("proj", "stage").metrics_namespace == metrics_namespace("proj", "stage")
    assert TLS_POLICY.startswith(rules.MODERN_TLS_POLICY_PREFIX)
    assert rules.REDIS_PORT == REDIS_PORT
    assert (rules._SECRET_SIG_KEY, rules._SECRET_SIG) == (SECRET_SIG_KEY, SECRET_SIG)


# --- ElastiCache ---------------------------------------------------------------------------------

GROUP = "prod-redis-group"


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("transitEncryptionEnabled", False, "transitEncryptionEnabled"),
        ("transitEncryptionEnabled", None, "transitEncryptionEnabled"),
        ("transitEncryptionMode", "preferred", "transitEncryptionMode"),
        ("atRestEncryptionEnabled", False, "atRestEncryptionEnabled"),
        ("atRestEncryptionEnabled", None, "atRestEncryptionEnabled"),
        ("authTokenWo", None, "authToken"),
        ("authTokenWo", "", "authToken"),
    ],
)
def test_elasticache_without_encryption_or_auth_violates(
    prod: StackRender, path: str, value: Any, complaint: str
) -> None:
    group = set_path(inputs_of(prod, GROUP), path, value)
    problems = rules.elasticache_encrypted_with_auth(rules.REPLICATION_GROUP, group)
    assert len(problems) == 1 and complaint in problems[0]


def test_elasticache_replication_group_of_the_program_passes(prod: StackRender) -> None:
    group = inputs_of(prod, GROUP)
    assert rules.field(group, "authTokenWo"), "the mock records the token (as a secret)"
    assert rules.elasticache_encrypted_with_auth(rules.REPLICATION_GROUP, group) == []


def test_secrets_sent_write_only_pass_and_kept_in_the_state_violate(prod: StackRender) -> None:
    group = inputs_of(prod, GROUP)
    parameters = [r.inputs for r in prod.of_type(rules.PARAMETER) if r.inputs["type"] == "SecureString"]
    assert len(parameters) == 3 and all("valueWo" in p for p in parameters)
    for resource_type, props in [(rules.REPLICATION_GROUP, group), *((rules.PARAMETER, p) for p in parameters)]:
        assert rules.secrets_write_only(resource_type, props) == []
    (stored_token,) = rules.secrets_write_only(rules.REPLICATION_GROUP, {**group, "authToken": "in-the-state"})
    assert "authTokenWo" in stored_token
    (stored_value,) = rules.secrets_write_only(rules.PARAMETER, {**parameters[0], "value": "in-the-state"})
    assert "valueWo" in stored_value
    # A String parameter (the live release) is no secret: its value may stay in the state.
    assert rules.secrets_write_only(rules.PARAMETER, {"type": "String", "value": "2026.11.25-1"}) == []


def test_standalone_cache_cluster_violates_and_member_of_a_group_passes(prod: StackRender) -> None:
    group = inputs_of(prod, GROUP)
    standalone = {"engine": "redis", "nodeType": group["nodeType"], "numCacheNodes": 1.0}
    member = {"replicationGroupId": "prod-redis-group-abc"}
    assert rules.elasticache_encrypted_with_auth(rules.CACHE_CLUSTER, standalone)
    assert rules.elasticache_encrypted_with_auth(rules.CACHE_CLUSTER, member) == []


# --- security group ingress ----------------------------------------------------------------------

REDIS_FROM_WEB = "prod-redis-from-web"  # 6379 from the web security group
WORLD_HTTPS = "prod-alb-in-443"  # 443 from 0.0.0.0/0 to the load balancer
WEB_FROM_ALB = "prod-web-from-alb"  # gunicorn's port from the load balancer's group


def redis_rule_from_cidr(prod: StackRender, **cidr: str) -> Props:
    rule = set_path(inputs_of(prod, REDIS_FROM_WEB), "referencedSecurityGroupId", None)
    return {**rule, **cidr}


def test_redis_ingress_from_security_groups_passes(prod: StackRender) -> None:
    assert rules.no_redis_ingress_from_cidr(rules.INGRESS_RULE, inputs_of(prod, REDIS_FROM_WEB)) == []


@pytest.mark.parametrize("cidr", [{"cidrIpv4": "10.40.0.0/16"}, {"cidrIpv4": "10.40.1.7/32"}, {"cidrIpv6": "fd00::/8"}])
def test_redis_ingress_from_any_cidr_violates(prod: StackRender, cidr: dict[str, str]) -> None:
    problems = rules.no_redis_ingress_from_cidr(rules.INGRESS_RULE, redis_rule_from_cidr(prod, **cidr))
    assert len(problems) == 1 and "6379" in problems[0]


def test_redis_ingress_from_a_prefix_list_violates(prod: StackRender) -> None:
    rule = redis_rule_from_cidr(prod, prefixListId="pl-0123456789abcdef0")
    assert rules.no_redis_ingress_from_cidr(rules.INGRESS_RULE, rule)


def test_all_protocols_from_a_cidr_reach_redis_and_violate(prod: StackRender) -> None:
    rule = {**inputs_of(prod, WORLD_HTTPS), "ipProtocol": "-1"}
    del rule["fromPort"], rule["toPort"]
    assert rules.no_redis_ingress_from_cidr(rules.INGRESS_RULE, rule)


def test_https_from_the_world_is_not_redis_ingress(prod: StackRender) -> None:
    assert rules.no_redis_ingress_from_cidr(rules.INGRESS_RULE, inputs_of(prod, WORLD_HTTPS)) == []


def inline_group(prod: StackRender, *ingress: Props) -> Props:
    """The web security group as the program builds it, with inline ingress rules added."""
    return {**inputs_of(prod, "prod-web", rules.SECURITY_GROUP), "ingress": list(ingress)}


def legacy_rule(**fields: Any) -> Props:
    return {"type": "ingress", "protocol": "tcp", "securityGroupId": "sg-0a1b2c3d4e5f67890", **fields}


@pytest.mark.parametrize(
    ("resource_type", "make"),
    [
        (
            rules.SECURITY_GROUP,
            lambda p: inline_group(
                p, {"protocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0, "cidrBlocks": ["10.0.0.0/8"]}
            ),
        ),
        (rules.SECURITY_GROUP_RULE, lambda p: legacy_rule(fromPort=6000.0, toPort=7000.0, cidrBlocks=["10.0.0.0/8"])),
    ],
    ids=["inline-rule", "aws.ec2.SecurityGroupRule"],
)
def test_redis_from_cidr_in_the_other_rule_forms_violates(
    prod: StackRender, resource_type: str, make: Callable[[StackRender], Props]
) -> None:
    assert rules.no_redis_ingress_from_cidr(resource_type, make(prod))


def test_security_group_without_inline_rules_passes(prod: StackRender) -> None:
    for policy in rules.RESOURCE_POLICIES:
        assert policy.check(rules.SECURITY_GROUP, inputs_of(prod, "prod-web", rules.SECURITY_GROUP), PROD) == []


def test_egress_rule_is_not_ingress() -> None:
    egress = legacy_rule(type="egress", fromPort=22.0, toPort=22.0, cidrBlocks=["0.0.0.0/0"])
    assert rules.no_ssh_ingress(rules.SECURITY_GROUP_RULE, egress) == []
    assert rules.no_world_ingress_outside_web(rules.SECURITY_GROUP_RULE, egress) == []


@pytest.mark.parametrize(
    "change",
    [
        {"fromPort": 22.0, "toPort": 22.0},
        {"fromPort": 0.0, "toPort": 65535.0},
        {"fromPort": 22.0, "toPort": 22.0, "cidrIpv4": None, "referencedSecurityGroupId": "sg-0a1b2c3d4e5f67890"},
        {"ipProtocol": "-1", "fromPort": None, "toPort": None},
    ],
    ids=["22-from-cidr", "port-range", "22-from-a-security-group", "all-protocols"],
)
def test_ingress_to_port_22_from_anywhere_violates(prod: StackRender, change: dict[str, Any]) -> None:
    problems = rules.no_ssh_ingress(rules.INGRESS_RULE, edited(inputs_of(prod, WORLD_HTTPS), change))
    assert len(problems) == 1 and "22" in problems[0]


def test_ssh_in_an_inline_rule_violates(prod: StackRender) -> None:
    group = inline_group(prod, {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "securityGroups": ["sg-1"]})
    assert rules.no_ssh_ingress(rules.SECURITY_GROUP, group)


def test_https_from_the_world_is_not_ssh(prod: StackRender) -> None:
    assert rules.no_ssh_ingress(rules.INGRESS_RULE, inputs_of(prod, WORLD_HTTPS)) == []


@pytest.mark.parametrize(
    "change",
    [
        {"referencedSecurityGroupId": None, "cidrIpv4": "0.0.0.0/0"},
        {"referencedSecurityGroupId": None, "cidrIpv6": "::/0"},
        {"referencedSecurityGroupId": None, "cidrIpv4": "0.0.0.0/0", "fromPort": 80.0, "toPort": 443.0},
        {
            "referencedSecurityGroupId": None,
            "cidrIpv4": "0.0.0.0/0",
            "ipProtocol": "icmp",
            "fromPort": -1.0,
            "toPort": -1.0,
        },
    ],
    ids=["gunicorn-port", "ipv6", "range-80-443", "icmp"],
)
def test_world_ingress_outside_80_and_443_violates(prod: StackRender, change: dict[str, Any]) -> None:
    problems = rules.no_world_ingress_outside_web(rules.INGRESS_RULE, edited(inputs_of(prod, WEB_FROM_ALB), change))
    assert len(problems) == 1 and "/0" in problems[0]


@pytest.mark.parametrize(("port", "cidr"), [(443.0, "0.0.0.0/0"), (80.0, "0.0.0.0/0"), (443.0, "10.40.0.0/16")])
def test_world_ingress_to_80_or_443_passes(prod: StackRender, port: float, cidr: str) -> None:
    rule = {**inputs_of(prod, WEB_FROM_ALB), "fromPort": port, "toPort": port, "cidrIpv4": cidr}
    assert rules.no_world_ingress_outside_web(rules.INGRESS_RULE, rule) == []


def test_world_ingress_in_an_inline_rule_violates(prod: StackRender) -> None:
    group = inline_group(prod, {"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "cidrBlocks": ["0.0.0.0/0"]})
    assert rules.no_world_ingress_outside_web(rules.SECURITY_GROUP, group)


# --- the load balancer's world ingress ----------------------------------------------------------


def test_the_load_balancer_is_open_to_the_world_on_80_and_443_only(prod: StackRender) -> None:
    for port in (80, 443):
        rule = inputs_of(prod, f"prod-alb-in-{port}")
        assert rule["cidrIpv4"] == "0.0.0.0/0"
        assert rules.no_world_ingress_outside_web(rules.INGRESS_RULE, rule) == []
    wider = {**inputs_of(prod, WORLD_HTTPS), "fromPort": 443.0, "toPort": 8000.0}
    assert rules.no_world_ingress_outside_web(rules.INGRESS_RULE, wider)


# --- listeners -----------------------------------------------------------------------------------

HTTPS_LISTENER, HTTP_LISTENER = "prod-https", "prod-http"


def listener_of(prod: StackRender, name: str) -> tuple[str, Props]:
    (found,) = [r for r in prod.resources if r.name == name and r.type_ in rules.LISTENERS]
    return found.type_, copy.deepcopy(found.inputs)


@pytest.mark.parametrize("name", [HTTPS_LISTENER, HTTP_LISTENER])
def test_listeners_of_the_program_pass(prod: StackRender, name: str) -> None:
    assert rules.listener_https_only(*listener_of(prod, name)) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"sslPolicy": "ELBSecurityPolicy-2016-08"}, "sslPolicy"),
        ({"sslPolicy": None}, "sslPolicy"),
        ({"certificateArn": None}, "certificateArn"),
    ],
)
def test_https_listener_with_an_old_policy_or_no_certificate_violates(
    prod: StackRender, change: dict[str, Any], complaint: str
) -> None:
    type_, props = listener_of(prod, HTTPS_LISTENER)
    problems = rules.listener_https_only(type_, edited(props, change))
    assert len(problems) == 1 and complaint in problems[0]


def test_http_listener_that_forwards_instead_of_redirecting_violates(prod: StackRender) -> None:
    type_, props = listener_of(prod, HTTP_LISTENER)
    forward = listener_of(prod, HTTPS_LISTENER)[1]["defaultActions"]
    problems = rules.listener_https_only(type_, {**props, "defaultActions": forward})
    assert len(problems) == 1 and "redirect to HTTPS" in problems[0]


# --- launch templates ----------------------------------------------------------------------------

TEMPLATES = ["prod-web", "prod-worker-beat", "prod-worker"]


def template_of(prod: StackRender, name: str) -> Props:
    return inputs_of(prod, name, rules.LAUNCH_TEMPLATE)


@pytest.mark.parametrize("name", TEMPLATES)
def test_launch_templates_of_the_program_are_hardened(prod: StackRender, name: str) -> None:
    assert rules.instance_hardened(rules.LAUNCH_TEMPLATE, template_of(prod, name)) == []


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("metadataOptions.httpTokens", "optional", "IMDSv2"),
        ("metadataOptions", None, "IMDSv2"),
        ("networkInterfaces.0.associatePublicIpAddress", "true", "public IP"),
        ("networkInterfaces", None, "public IP"),
        ("keyName", "deployer", "key pair"),
        ("blockDeviceMappings.0.ebs.encrypted", "false", "encrypted"),
        ("blockDeviceMappings", None, "encrypted"),
    ],
)
def test_launch_template_without_hardening_violates(prod: StackRender, path: str, value: Any, complaint: str) -> None:
    template = set_path(template_of(prod, "prod-web"), path, value)
    problems = rules.instance_hardened(rules.LAUNCH_TEMPLATE, template)
    assert len(problems) == 1 and complaint in problems[0]


# A plain instance (the program launches none; a hand-added one is still judged).
HARDENED_INSTANCE: Props = {
    "ami": "ami-0a1b2c3d4e5f67890",
    "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1.0},
    "associatePublicIpAddress": False,
    "rootBlockDevice": {"encrypted": True, "volumeType": "gp3"},
}


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("metadataOptions.httpTokens", "optional", "IMDSv2"),
        ("associatePublicIpAddress", None, "public IP"),
        ("keyName", "deployer", "key pair"),
        ("rootBlockDevice.encrypted", False, "encrypted"),
    ],
)
def test_instance_without_hardening_violates(path: str, value: Any, complaint: str) -> None:
    assert rules.instance_hardened(rules.INSTANCE, HARDENED_INSTANCE) == []
    problems = rules.instance_hardened(rules.INSTANCE, set_path(HARDENED_INSTANCE, path, value))
    assert len(problems) == 1 and complaint in problems[0]


def test_elastic_ip_of_a_nat_gateway_passes_and_one_on_an_instance_violates(prod: StackRender) -> None:
    nat_address = inputs_of(prod, "prod-nat-0", rules.ELASTIC_IP)
    assert rules.instance_hardened(rules.ELASTIC_IP, nat_address) == []
    problems = rules.instance_hardened(rules.ELASTIC_IP, {**nat_address, "instance": "i-0a1b2c3d4e5f67890"})
    assert len(problems) == 1 and "Elastic IP" in problems[0]
    association = {"allocationId": "eipalloc-0a1b2c3d4e5f67890", "instanceId": "i-0a1b2c3d4e5f67890"}
    assert rules.instance_hardened(rules.ELASTIC_IP_ASSOCIATION, association)


def test_template_with_metadata_disabled_has_no_imdsv1(prod: StackRender) -> None:
    template = set_path(template_of(prod, "prod-web"), "metadataOptions", {"httpEndpoint": "disabled"})
    assert rules.instance_hardened(rules.LAUNCH_TEMPLATE, template) == []


# --- user-data -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_user_data_of_the_program_verifies_redis_tls(prod: StackRender, name: str) -> None:
    template = template_of(prod, name)
    # The passing case means something only if the user-data does contain rediss:// URLs.
    assert "rediss://" in rules.user_data_text(template, rules.LAUNCH_TEMPLATE)  # type: ignore[operator]
    assert rules.user_data_verifies_redis_tls(rules.LAUNCH_TEMPLATE, template) == []


@pytest.mark.parametrize(
    "replacement", ["", "?ssl_cert_reqs=none", "?ssl_cert_reqs=optional", "?ssl_cert_reqs=CERT_NONE"]
)
def test_rediss_url_without_certificate_verification_violates(prod: StackRender, replacement: str) -> None:
    template = with_user_data(
        template_of(prod, "prod-worker-beat"), lambda doc: doc.replace("?ssl_cert_reqs=required", replacement)
    )
    problems = rules.user_data_verifies_redis_tls(rules.LAUNCH_TEMPLATE, template)
    assert problems and all("ssl_cert_reqs=required" in p for p in problems)


def test_rediss_url_with_a_password_is_reported_without_it(prod: StackRender) -> None:
    url = "rediss://:hunter2hunter2@master.prod.cache.amazonaws.com:6379/0"
    template = with_user_data(template_of(prod, "prod-web"), lambda doc: doc + f"# CELERY_BROKER_URL={url}\n")
    problems = rules.user_data_verifies_redis_tls(rules.LAUNCH_TEMPLATE, template)
    assert len(problems) == 1 and "hunter2" not in problems[0] and "master.prod" in problems[0]


def test_rediss_url_in_a_base64_written_file_violates(prod: StackRender) -> None:
    def add_encoded_file(document: str) -> str:
        config = yaml.safe_load(document)
        content = base64.b64encode(b"CELERY_BROKER_URL=rediss://redis.internal:6379/0\n").decode()
        config["write_files"].append({"path": "/etc/app/broker.env", "encoding": "b64", "content": content})
        return "#cloud-config\n" + yaml.safe_dump(config)

    template = with_user_data(template_of(prod, "prod-web"), add_encoded_file)
    assert rules.user_data_verifies_redis_tls(rules.LAUNCH_TEMPLATE, template)


def test_an_instances_plain_and_base64_user_data_are_read_too(prod: StackRender) -> None:
    document = decode_user_data(template_of(prod, "prod-web")["userData"])
    for instance in ({"userData": document}, {"userDataBase64": encode_user_data(document)}):
        assert rules.user_data_verifies_redis_tls(rules.INSTANCE, instance) == []
    broken = document.replace("?ssl_cert_reqs=required", "")
    assert rules.user_data_verifies_redis_tls(rules.INSTANCE, {"userData": broken})
    assert rules.user_data_verifies_redis_tls(rules.INSTANCE, {"userDataBase64": encode_user_data(broken)})


# --- one Beat ------------------------------------------------------------------------------------


def stack_resources(render: StackRender) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [(r.type_, r.name, copy.deepcopy(r.inputs)) for r in render.resources]


def group_of(resources: list[tuple[str, str, Mapping[str, Any]]], name: str) -> Any:
    return next(props for type_, n, props in resources if n == name and type_ == rules.AUTOSCALING_GROUP)


def test_the_beat_group_of_the_program_holds_one_and_passes(prod: StackRender) -> None:
    beat = group_of(stack_resources(prod), "prod-worker-beat")
    assert rules.beat_group_of_one(rules.AUTOSCALING_GROUP, beat) == []
    assert any(tag["key"] == BEAT_TAG for tag in beat["tags"]), "the passing case is a Beat group"


@pytest.mark.parametrize("key", ["maxSize", "desiredCapacity", "minSize"])
def test_a_beat_group_of_more_than_one_violates(prod: StackRender, key: str) -> None:
    beat = {**group_of(stack_resources(prod), "prod-worker-beat"), key: 2.0}
    problems = rules.beat_group_of_one(rules.AUTOSCALING_GROUP, beat)
    assert len(problems) == 1 and key in problems[0]


def test_a_second_beat_group_violates(prod: StackRender) -> None:
    resources = stack_resources(prod)
    group_of(resources, "prod-worker")["tags"].append({"key": BEAT_TAG, "value": "true", "propagateAtLaunch": True})
    problems = rules.single_beat(resources)
    assert len(problems) == 1
    named = problems[0].split("(", 1)[1].split(")", 1)[0]
    assert sorted(named.split(", ")) == ["prod-worker", "prod-worker-beat"]


def test_a_beat_instance_next_to_the_beat_group_violates(prod: StackRender) -> None:
    resources = [*stack_resources(prod), (rules.INSTANCE, "extra", {**HARDENED_INSTANCE, "tags": {BEAT_TAG: "true"}})]
    assert rules.single_beat(resources)


def test_stack_without_beat_passes(render: Callable[..., StackRender]) -> None:
    without = render({"worker.beat": False})
    assert not any(BEAT_TAG in i.tags for i in without.instances)
    assert rules.single_beat(stack_resources(without)) == []


# --- alarms every stack pages on ------------------------------------------------------------------


def alarms_reading(resources: list[tuple[str, str, Any]], metric: str) -> list[str]:
    return [
        name
        for type_, name, props in resources
        if type_ == rules.METRIC_ALARM
        and metric
        in [props.get("metricName"), *[q.get("metric", {}).get("metricName") for q in props.get("metricQueries", [])]]
    ]


def test_the_programs_broker_memory_and_backlog_alarms_pass(prod: StackRender) -> None:
    resources = stack_resources(prod)
    assert alarms_reading(resources, "DatabaseMemoryUsagePercentage") == [
        "prod-broker-memory-001",
        "prod-broker-memory-002",
    ]
    assert sorted(alarms_reading(resources, "QueueBacklog")) == [
        "prod-queue-backlog-default",
        "prod-queue-backlog-long",
    ]
    assert rules.broker_and_backlog_alarms(resources, PROD) == []


@pytest.mark.parametrize(
    ("metric", "complaint"),
    [
        ("DatabaseMemoryUsagePercentage", "AWS/ElastiCache DatabaseMemoryUsagePercentage"),
        ("QueueBacklog", f"DjangoStack/Celery/{PROJECT}/prod QueueBacklog"),
    ],
)
def test_a_stack_without_the_alarm_or_its_action_violates(prod: StackRender, metric: str, complaint: str) -> None:
    resources = stack_resources(prod)
    alarmed = set(alarms_reading(resources, metric))
    without = [r for r in resources if r[1] not in alarmed]
    (problem,) = rules.broker_and_backlog_alarms(without, PROD)
    assert complaint in problem
    # The alarm is there but tells nobody.
    silent = [(t, n, {**p, "alarmActions": []} if n in alarmed else p) for t, n, p in resources]
    (problem,) = rules.broker_and_backlog_alarms(silent, PROD)
    assert complaint in problem


def test_a_backlog_alarm_in_metric_math_and_an_action_unknown_in_preview_pass(prod: StackRender) -> None:
    resources = stack_resources(prod)
    backlog = set(alarms_reading(resources, "QueueBacklog"))
    as_math = [
        (
            t,
            n,
            {
                "metricQueries": [
                    {"id": "b", "metric": {"namespace": p["namespace"], "metricName": p["metricName"]}},
                    {"id": "e", "expression": "b * 1", "returnData": True},
                ],
                "alarmActions": UNKNOWN_STRING_VALUE,
            }
            if n in backlog
            else p,
        )
        for t, n, p in resources
    ]
    assert rules.broker_and_backlog_alarms(as_math, PROD) == []


# --- what the policy SDK hands over: proxies that raise on values unknown during preview ---------


def engine_view(props: Props) -> Mapping[str, Any]:
    """The props as pulumi-policy passes them: secrets unwrapped, unknowns behind a proxy."""
    return unknown_checking_proxy(rules_reveal_secrets(props))  # type: ignore[no-any-return]


def rules_reveal_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG_KEY in value:
            return rules_reveal_secrets(value["value"])
        return {k: rules_reveal_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rules_reveal_secrets(v) for v in value]
    return value


def test_unknown_user_data_is_left_for_the_update_while_known_fields_are_judged(prod: StackRender) -> None:
    template = {**template_of(prod, "prod-web"), "userData": UNKNOWN_STRING_VALUE, "keyName": "deployer"}
    view = engine_view(template)
    assert rules.user_data_verifies_redis_tls(rules.LAUNCH_TEMPLATE, view) == []
    problems = rules.instance_hardened(rules.LAUNCH_TEMPLATE, view)
    assert len(problems) == 1 and "key pair" in problems[0]


def test_unknown_auth_token_will_be_set_and_passes(prod: StackRender) -> None:
    group = {**inputs_of(prod, GROUP), "authTokenWo": UNKNOWN_STRING_VALUE, "atRestEncryptionEnabled": False}
    problems = rules.elasticache_encrypted_with_auth(rules.REPLICATION_GROUP, engine_view(group))
    assert len(problems) == 1 and "atRest" in problems[0]


def test_unknown_key_name_is_still_a_key_pair(prod: StackRender) -> None:
    template = {**template_of(prod, "prod-web"), "keyName": UNKNOWN_STRING_VALUE}
    assert rules.instance_hardened(rules.LAUNCH_TEMPLATE, engine_view(template))


def test_engine_view_of_every_prod_resource_passes(prod: StackRender) -> None:
    for resource in prod.resources:
        for policy in rules.RESOURCE_POLICIES:
            assert policy.check(resource.type_, engine_view(resource.inputs), PROD) == [], (resource.name, policy.name)


# --- IAM: Parameter Store reads ------------------------------------------------------------------

READ_POLICY = "prod-worker-read-secrets-and-releases"


def with_statement(props: Props, statement: dict[str, Any]) -> Props:
    document = json.loads(props["policy"])
    document["Statement"].append(statement)
    return {**props, "policy": json.dumps(document)}


@pytest.mark.parametrize("name", [READ_POLICY, "prod-web-ssm-agent", "prod-flow-logs"])
def test_role_policies_of_the_program_read_only_named_parameters(prod: StackRender, name: str) -> None:
    policy = inputs_of(prod, name, rules.ROLE_POLICY)
    assert rules.no_parameter_reads_on_everything(rules.ROLE_POLICY, policy) == []


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"},
        {"Effect": "Allow", "Action": ["ssm:Get*"], "Resource": "arn:aws:ssm:eu-west-1:123456789012:parameter/*"},
        {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:ssm:*:*:*"},
        {"Effect": "Allow", "Action": "ssm:GetParametersByPath", "Resource": "arn:aws:ssm:*:*:parameter/*/prod"},
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "ssm:GetParameters", "NotResource": "arn:aws:ssm:*:*:parameter/x"},
    ],
    ids=[
        "get-parameter-on-star",
        "get-star-on-every-parameter",
        "star-on-ssm",
        "wildcard-tree",
        "not-action",
        "not-resource",
    ],
)
def test_a_parameter_read_beyond_a_named_tree_violates(prod: StackRender, statement: dict[str, Any]) -> None:
    policy = with_statement(inputs_of(prod, READ_POLICY, rules.ROLE_POLICY), statement)
    assert len(rules.no_parameter_reads_on_everything(rules.ROLE_POLICY, policy)) == 1


def test_a_read_of_another_named_tree_or_a_deny_passes(prod: StackRender) -> None:
    named_tree = {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:*:*:parameter/shared/x"}
    deny = {"Effect": "Deny", "Action": "ssm:*", "Resource": "*"}
    policy = with_statement(with_statement(inputs_of(prod, READ_POLICY, rules.ROLE_POLICY), named_tree), deny)
    assert rules.no_parameter_reads_on_everything(rules.ROLE_POLICY, policy) == []


@pytest.mark.parametrize("partition", ["aws", "aws-us-gov", "aws-cn"])
def test_ssm_managed_instance_core_attached_violates(prod: StackRender, partition: str) -> None:
    arn = f"arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
    attachment = {"role": "prod-worker-role", "policyArn": arn}
    problems = rules.no_parameter_reads_on_everything(rules.POLICY_ATTACHMENT, attachment)
    assert len(problems) == 1 and "AmazonSSMManagedInstanceCore" in problems[0]
    role = {**inputs_of(prod, "prod-worker-role", rules.ROLE), "managedPolicyArns": [attachment["policyArn"]]}
    assert rules.no_parameter_reads_on_everything(rules.ROLE, role)
    assert rules.no_parameter_reads_on_everything(rules.ROLE, inputs_of(prod, "prod-worker-role", rules.ROLE)) == []


def test_a_wide_read_in_a_managed_or_inline_role_policy_violates(prod: StackRender) -> None:
    wide = json.dumps({"Statement": [{"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": "*"}]})
    assert rules.no_parameter_reads_on_everything(rules.MANAGED_POLICY, {"policy": wide})
    role = {**inputs_of(prod, "prod-worker-role", rules.ROLE), "inlinePolicies": [{"name": "x", "policy": wide}]}
    assert rules.no_parameter_reads_on_everything(rules.ROLE, role)


def test_an_unknown_policy_document_is_left_for_the_update(prod: StackRender) -> None:
    policy = {**inputs_of(prod, READ_POLICY, rules.ROLE_POLICY), "policy": UNKNOWN_STRING_VALUE}
    assert rules.no_parameter_reads_on_everything(rules.ROLE_POLICY, engine_view(policy)) == []


# --- IAM: what one machine may do to the others ----------------------------------------------------

METRICS_POLICY = "prod-worker-beat-publish-metrics"
LIFECYCLE_POLICY = "prod-worker-complete-termination"


@pytest.mark.parametrize("name", [METRICS_POLICY, LIFECYCLE_POLICY, "prod-worker-beat-complete-termination"])
def test_the_programs_metrics_and_lifecycle_grants_are_scoped(prod: StackRender, name: str) -> None:
    assert rules.instance_grants_scoped(rules.ROLE_POLICY, inputs_of(prod, name, rules.ROLE_POLICY), PROD) == []


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        {"Effect": "Allow", "Action": "cloudwatch:Put*", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": "DjangoStack/*"}},
        },
        {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "autoscaling:CompleteLifecycleAction", "Resource": "*"},
        {"Effect": "Allow", "Action": "autoscaling:SetInstanceHealth", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "autoscaling:*",
            "Resource": "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/prod-*",
        },
    ],
    ids=[
        "metrics-anywhere",
        "put-star",
        "namespace-pattern",
        "not-action",
        "lifecycle-on-star",
        "health-on-star",
        "lifecycle-wildcard",
    ],
)
def test_an_unscoped_metrics_or_lifecycle_grant_violates(prod: StackRender, statement: dict[str, Any]) -> None:
    policy = with_statement(inputs_of(prod, LIFECYCLE_POLICY, rules.ROLE_POLICY), statement)
    assert rules.instance_grants_scoped(rules.ROLE_POLICY, policy, PROD)


def test_metrics_into_another_stacks_namespace_violate(prod: StackRender) -> None:
    grant = inputs_of(prod, METRICS_POLICY, rules.ROLE_POLICY)
    assert rules.instance_grants_scoped(rules.ROLE_POLICY, grant, PROD) == []
    # prod's own Beat grant, judged as staging's: it writes another stack's metrics.
    staging = rules.StackId(PROJECT, "staging")
    assert rules.instance_grants_scoped(rules.ROLE_POLICY, grant, staging) == [
        f"cloudwatch:PutMetricData into DjangoStack/Celery/{PROJECT}/prod: only the stack's own namespace "
        f"(DjangoStack/Celery/{PROJECT}/staging), or one stack's machines write another's metrics"
    ]
    # The namespace every stack shared before namespaces were per stack.
    shared = set_path(grant, "policy", grant["policy"].replace(f"/{PROJECT}/prod", ""))
    (problem,) = rules.instance_grants_scoped(rules.ROLE_POLICY, shared, PROD)
    assert "into DjangoStack/Celery:" in problem


def test_the_stack_is_read_from_the_engines_urn() -> None:
    urn = "urn:pulumi:staging::django-stack::djangostack:access:InstanceAccess$aws:iam/rolePolicy:RolePolicy::x"
    assert rules.StackId.of_urn(urn) == rules.StackId("django-stack", "staging")


# --- customer managed keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "name", "key_field"),
    [
        (rules.REPLICATION_GROUP, GROUP, "kmsKeyId"),
        (rules.PARAMETER, "prod-redis-auth-token", "keyId"),
        (rules.PARAMETER, "prod-django-secret-key", "keyId"),
        (rules.LOG_GROUP, "prod-redis-slow-log", "kmsKeyId"),
        (rules.LOG_GROUP, "prod-flow-logs", "kmsKeyId"),
    ],
)
def test_resources_under_the_stack_key_pass_and_without_it_violate(
    prod: StackRender, resource_type: str, name: str, key_field: str
) -> None:
    props = inputs_of(prod, name, resource_type)
    assert rules.customer_managed_keys(resource_type, props) == []
    assert len(rules.customer_managed_keys(resource_type, set_path(props, key_field, None))) == 1


@pytest.mark.parametrize("key", ["alias/aws/ssm", "arn:aws:kms:eu-west-1:123456789012:alias/aws/ssm"])
def test_a_secure_string_under_the_aws_managed_key_violates(prod: StackRender, key: str) -> None:
    parameter = {**inputs_of(prod, "prod-redis-auth-token", rules.PARAMETER), "keyId": key}
    problems = rules.customer_managed_keys(rules.PARAMETER, parameter)
    assert len(problems) == 1 and "aws/ssm" in problems[0]


def test_a_plain_string_parameter_needs_no_key(prod: StackRender) -> None:
    parameter = {**inputs_of(prod, "prod-redis-auth-token", rules.PARAMETER), "type": "String"}
    assert rules.customer_managed_keys(rules.PARAMETER, set_path(parameter, "keyId", None)) == []


# --- network baseline ----------------------------------------------------------------------------


def test_the_default_security_group_without_rules_passes_and_with_one_violates(prod: StackRender) -> None:
    default = inputs_of(prod, "prod-default-sg", rules.DEFAULT_SECURITY_GROUP)
    assert rules.default_security_group_without_rules(rules.DEFAULT_SECURITY_GROUP, default) == []
    allow_all = {"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "cidrBlocks": ["0.0.0.0/0"]}
    for direction in ("ingress", "egress"):
        problems = rules.default_security_group_without_rules(
            rules.DEFAULT_SECURITY_GROUP, {**default, direction: [allow_all]}
        )
        assert len(problems) == 1 and direction in problems[0]
