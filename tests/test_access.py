"""The instance role: the SSM agent's actions without GetParameter*, and Parameter Store reads
limited to the stack's own parameters, whichever policy (inline or attached) grants them.
Policies are parsed as JSON and judged statement by statement, never matched as text."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

from components.access import SSM_AGENT_ACTIONS, AccessArgs, InstanceAccess
from offline_render.fake_aws import ACCOUNT, RecordedResource
from offline_render.program import StackRender
from tests.conftest import named, of_type

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
MANAGED_POLICY = "aws:iam/policy:Policy"
PARAMETER_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory")
STACK_TREE = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/django-stack/prod/"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(render: StackRender, role_name: str) -> list[dict[str, Any]]:
    """Every statement of every policy the role gets: its inline policies (on the role or as
    RolePolicy resources) and every managed policy attached to it that the stack defines.
    An attached policy the stack does not define (an AWS-managed one) fails the walk."""
    role = named(render, ROLE, role_name)
    role_refs = {role_name, f"{role_name}-id"}  # the mock's name and id of the role
    documents = [policy["policy"] for policy in role.get("inlinePolicies", [])]
    documents += [p.inputs["policy"] for p in render.of_type(ROLE_POLICY) if p.inputs["role"] in role_refs]
    managed = {f"arn:aws:iam::{ACCOUNT}:policy/{p.name}": p.inputs["policy"] for p in render.of_type(MANAGED_POLICY)}
    attached = [a.inputs["policyArn"] for a in render.of_type(ATTACHMENT) if a.inputs["role"] in role_refs]
    attached += role.get("managedPolicyArns", [])
    unknown = [arn for arn in attached if arn not in managed]
    assert not unknown, f"{role_name}: attached policies the stack cannot judge: {unknown}"
    documents += [managed[arn] for arn in attached]
    return [statement for document in documents for statement in as_list(json.loads(document)["Statement"])]


def reads_parameters(statement: dict[str, Any]) -> bool:
    if statement["Effect"] != "Allow":
        return False
    if "NotAction" in statement:
        return True  # allows everything it does not name: judged as a read
    return any(
        fnmatchcase(action.lower(), pattern.lower())
        for pattern in as_list(statement["Action"])
        for action in PARAMETER_READS
    )


def instance_role(render: StackRender) -> str:
    """The role the instances get: the one in the stack's instance profile."""
    (profile,) = render.of_type("aws:iam/instanceProfile:InstanceProfile")
    return str(profile.inputs["role"])


def parameter_read_resources(render: StackRender) -> list[str]:
    resources: list[str] = []
    for statement in role_statements(render, instance_role(render)):
        if reads_parameters(statement):
            assert "NotResource" not in statement, statement
            resources += as_list(statement["Resource"])
    return resources


def test_no_policy_of_the_instance_role_reads_parameters_outside_the_stack(prod: StackRender) -> None:
    resources = parameter_read_resources(prod)
    assert resources, "the walk found no parameter read at all: it would pass anything"
    for resource in resources:
        assert resource.startswith(STACK_TREE) and "*" not in resource and "?" not in resource, resource


def test_the_walk_catches_an_attached_aws_managed_policy(prod: StackRender) -> None:
    attachment = {"role": "prod-role", "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    render = StackRender(
        prod.stack, prod.instances, [*prod.resources, RecordedResource(ATTACHMENT, "core", attachment)]
    )
    try:
        role_statements(render, "prod-role")
    except AssertionError as error:
        assert "AmazonSSMManagedInstanceCore" in str(error)
    else:
        raise AssertionError("an AWS-managed attachment went unnoticed")


def test_the_walk_catches_a_wide_read_in_a_managed_policy_of_the_stack(prod: StackRender) -> None:
    wide = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:Get*", "Resource": "*"}}
    extra = [
        RecordedResource(MANAGED_POLICY, "extra", {"policy": json.dumps(wide)}),
        RecordedResource(
            ATTACHMENT, "extra", {"role": "prod-role", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/extra"}
        ),
    ]
    render = StackRender(prod.stack, prod.instances, [*prod.resources, *extra])
    assert "*" in parameter_read_resources(render)


def test_the_ssm_agent_keeps_session_manager_and_run_command_without_parameter_reads(prod: StackRender) -> None:
    agent = json.loads(named(prod, ROLE_POLICY, "prod-ssm-agent")["policy"])
    (statement,) = agent["Statement"]
    assert statement["Resource"] == "*" and not reads_parameters(statement)
    for needed in ("ssm:UpdateInstanceInformation", "ssmmessages:OpenDataChannel", "ec2messages:GetMessages"):
        assert needed in statement["Action"]
    assert sorted(statement["Action"]) == sorted(SSM_AGENT_ACTIONS)


def read_statements(resources: list[RecordedResource]) -> list[dict[str, Any]]:
    (policy,) = [r for r in of_type(resources, ROLE_POLICY) if r.name == "t-read-secrets-and-releases"]
    return list(json.loads(policy.inputs["policy"])["Statement"])


RELEASE_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/release"


def test_access_alone_grants_reading_exactly_the_given_parameters(build_alone) -> None:
    arns = ["arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/a", "arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/b"]
    resources = build_alone(
        lambda: InstanceAccess("t", AccessArgs(arns, RELEASE_ARN, "bucket/releases/", {"Stack": "t"}))
    )
    statements = {s["Sid"]: s for s in read_statements(resources)}
    assert statements["ReadStackSecrets"]["Resource"] == arns
    assert (statements["ReadLiveRelease"]["Action"], statements["ReadLiveRelease"]["Resource"]) == (
        "ssm:GetParameter",
        RELEASE_ARN,
    )
    assert statements["ReadReleaseArtifacts"]["Resource"] == [
        "arn:aws:s3:::bucket/releases/*.tar.gz",
        "arn:aws:s3:::bucket/releases/*.tar.gz.sha256",  # the checksum app-release verifies first
    ]
    (profile,) = of_type(resources, "aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == "t-role"
    assert of_type(resources, ATTACHMENT) == []


def test_access_alone_without_artifacts_grants_no_s3(build_alone) -> None:
    resources = build_alone(
        lambda: InstanceAccess("t", AccessArgs(["arn:aws:ssm:::parameter/p"], RELEASE_ARN, None, {}))
    )
    assert [s["Sid"] for s in read_statements(resources)] == ["ReadStackSecrets", "ReadLiveRelease"]
