"""The instance roles, one per kind of machine: the SSM agent's actions without GetParameter*,
Parameter Store reads limited to the stack's own parameters, whichever policy (inline or
attached) grants them; lifecycle actions on the kind's own group only; PutMetricData for the
Beat kind only, in the stack's namespace only. Policies are parsed as JSON and judged statement
by statement, never matched as text."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import Any

import pytest

import userdata.render
from components.access import SSM_AGENT_ACTIONS, AccessArgs, InstanceAccess, KindAccess
from offline_render.fake_aws import ACCOUNT, AUTOSCALING_GROUP_TYPE, RecordedResource
from offline_render.program import StackRender, render_stack
from tests.conftest import named, of_type, rendered
from tests.test_fleet import REPLACED_ON_CHANGE as FLEET_REPLACED_ON_CHANGE
from tests.test_fleet import changed_inputs
from userdata import layout

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
MANAGED_POLICY = "aws:iam/policy:Policy"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
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


def instance_roles(render: StackRender) -> dict[str, str]:
    """Kind of machine -> the role its launch template's instance profile carries."""
    profiles = {p.name: str(p.inputs["role"]) for p in render.of_type(PROFILE)}  # the mock names it so
    templates = render.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    return {t.name.removeprefix("prod-"): profiles[t.inputs["iamInstanceProfile"]["name"]] for t in templates}


def parameter_read_resources(render: StackRender, role: str) -> list[str]:
    resources: list[str] = []
    for statement in role_statements(render, role):
        if reads_parameters(statement):
            assert "NotResource" not in statement, statement
            resources += as_list(statement["Resource"])
    return resources


def allowed(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow" and any(fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"]))
    ]


def test_each_kind_of_machine_has_a_role_of_its_own(prod: StackRender) -> None:
    roles = instance_roles(prod)
    assert roles == {"web": "prod-web-role", "worker": "prod-worker-role", "worker-beat": "prod-worker-beat-role"}


def test_no_policy_of_any_instance_role_reads_parameters_outside_the_stack(prod: StackRender) -> None:
    for role in instance_roles(prod).values():
        resources = parameter_read_resources(prod, role)
        assert resources, f"{role}: the walk found no parameter read at all: it would pass anything"
        for resource in resources:
            assert resource.startswith(STACK_TREE) and "*" not in resource and "?" not in resource, resource


def test_each_worker_kind_completes_lifecycle_actions_on_its_own_group_only_and_web_on_none(
    prod: StackRender,
) -> None:
    arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:prod-{0}-id:autoScalingGroupName/prod-{0}"
    for kind, role in instance_roles(prod).items():
        granted = allowed(role_statements(prod, role), "autoscaling:CompleteLifecycleAction")
        resources = [resource for s in granted for resource in as_list(s["Resource"])]
        assert resources == ([] if kind == "web" else [arn.format(kind)]), kind


def test_each_kind_reports_failed_boots_on_its_own_group_only(prod: StackRender) -> None:
    arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:prod-{0}-id:autoScalingGroupName/prod-{0}"
    for kind, role in instance_roles(prod).items():
        granted = allowed(role_statements(prod, role), "autoscaling:SetInstanceHealth")
        assert [resource for s in granted for resource in as_list(s["Resource"])] == [arn.format(kind)], kind
        assert all(as_list(s["Action"]) == ["autoscaling:SetInstanceHealth"] for s in granted), kind


def test_only_the_beat_kind_publishes_metrics_and_only_in_the_stacks_namespace(prod: StackRender) -> None:
    publishing = {
        kind: allowed(role_statements(prod, role), "cloudwatch:PutMetricData")
        for kind, role in instance_roles(prod).items()
    }
    assert publishing["web"] == publishing["worker"] == []
    (statement,) = publishing["worker-beat"]
    assert statement["Resource"] == "*"  # PutMetricData has no resource ARN: the condition scopes it
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "DjangoStack/Celery/django-stack/prod"}}
    assert as_list(statement["Action"]) == ["cloudwatch:PutMetricData"]


def test_a_stack_without_beat_has_no_beat_role_and_no_metrics_grant(render) -> None:
    stack = render({"worker.beat": False})
    assert sorted(instance_roles(stack)) == ["web", "worker"]
    assert not any("cloudwatch" in p.inputs["policy"] for p in stack.of_type(ROLE_POLICY))


def test_the_walk_catches_an_attached_aws_managed_policy(prod: StackRender) -> None:
    attachment = {"role": "prod-web-role", "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    render = StackRender(
        prod.stack, prod.instances, [*prod.resources, RecordedResource(ATTACHMENT, "core", attachment)]
    )
    try:
        role_statements(render, "prod-web-role")
    except AssertionError as error:
        assert "AmazonSSMManagedInstanceCore" in str(error)
    else:
        raise AssertionError("an AWS-managed attachment went unnoticed")


def test_the_walk_catches_a_wide_read_in_a_managed_policy_of_the_stack(prod: StackRender) -> None:
    wide = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:Get*", "Resource": "*"}}
    extra = [
        RecordedResource(MANAGED_POLICY, "extra", {"policy": json.dumps(wide)}),
        RecordedResource(
            ATTACHMENT, "extra", {"role": "prod-web-role", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/extra"}
        ),
    ]
    render = StackRender(prod.stack, prod.instances, [*prod.resources, *extra])
    assert "*" in parameter_read_resources(render, "prod-web-role")


def test_the_ssm_agent_keeps_session_manager_and_run_command_without_parameter_reads(prod: StackRender) -> None:
    agent = json.loads(named(prod, ROLE_POLICY, "prod-web-ssm-agent")["policy"])
    (statement,) = agent["Statement"]
    assert statement["Resource"] == "*" and not reads_parameters(statement)
    for needed in ("ssm:UpdateInstanceInformation", "ssmmessages:OpenDataChannel", "ec2messages:GetMessages"):
        assert needed in statement["Action"]
    assert sorted(statement["Action"]) == sorted(SSM_AGENT_ACTIONS)


def read_statements(resources: list[RecordedResource]) -> list[dict[str, Any]]:
    (policy,) = [r for r in of_type(resources, ROLE_POLICY) if r.name == "t-web-read-secrets-and-releases"]
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
    assert sorted(p.inputs["role"] for p in of_type(resources, PROFILE)) == ["t-web-role", "t-worker-role"]
    assert of_type(resources, ATTACHMENT) == []


def test_access_alone_without_artifacts_grants_no_s3(build_alone) -> None:
    resources = build_alone(
        lambda: InstanceAccess("t", AccessArgs(["arn:aws:ssm:::parameter/p"], RELEASE_ARN, None, {}))
    )
    assert [s["Sid"] for s in read_statements(resources)] == ["ReadStackSecrets", "ReadLiveRelease"]


def test_access_alone_grants_metrics_only_to_the_kind_it_names(build_alone) -> None:
    kinds = (KindAccess("web"), KindAccess("beat", publishes_metrics=True))
    args = AccessArgs(["arn:aws:ssm:::parameter/p"], RELEASE_ARN, None, {}, kinds, "Ns/Celery")
    resources = build_alone(lambda: InstanceAccess("t", args))
    (policy,) = [r for r in of_type(resources, ROLE_POLICY) if "cloudwatch" in r.inputs["policy"]]
    assert policy.inputs["role"] == "t-beat-role-id"
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Ns/Celery"}}


def test_a_publishing_kind_needs_a_namespace() -> None:
    with pytest.raises(ValueError, match="metrics_namespace: empty while beat publishes metrics"):
        AccessArgs([], RELEASE_ARN, None, {}, (KindAccess("web"), KindAccess("beat", publishes_metrics=True)))


# What AWS replaces a resource for (the provider's ForceNew inputs), for each type the namespace reaches.
REPLACED_ON_CHANGE = {
    **FLEET_REPLACED_ON_CHANGE,
    "aws:cloudwatch/metricAlarm:MetricAlarm": {"name"},
    "aws:cloudwatch/dashboard:Dashboard": {"dashboardName"},
    "aws:iam/rolePolicy:RolePolicy": {"name", "namePrefix", "role"},
    "aws:autoscaling/policy:Policy": {"name", "autoscalingGroupName"},
}


def test_the_per_stack_namespace_updates_an_existing_stack_in_place(prod, monkeypatch) -> None:
    """Stacks created with the one shared namespace: moving to their own changes the alarms, the
    dashboard, the scaling policy, the Beat's grant and the user-data, and replaces nothing."""

    def shared(project: str, stack: str) -> str:
        return layout.METRICS_NAMESPACE_ROOT

    monkeypatch.setattr(layout, "metrics_namespace", shared)
    monkeypatch.setattr(userdata.render, "metrics_namespace", shared)
    changed = changed_inputs(render_stack("prod"), prod)
    assert {type_ for type_, _ in changed} == set(REPLACED_ON_CHANGE) - {
        AUTOSCALING_GROUP_TYPE,
        "aws:lb/loadBalancer:LoadBalancer",
        "aws:lb/targetGroup:TargetGroup",
    }
    for (type_, name), inputs in changed.items():
        assert not inputs & REPLACED_ON_CHANGE[type_], (type_, name, inputs)


ARN_PARTITION = re.compile(r"\barn:([a-z-]*):")


def partitions_named(value: Any) -> set[str]:
    """The partition of every ARN in a resource's inputs, policy documents (JSON text) included."""
    return set(ARN_PARTITION.findall(json.dumps(value)))


@pytest.mark.parametrize(("region", "partition"), [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")])
def test_every_arn_the_program_writes_names_the_regions_partition(region: str, partition: str) -> None:
    stack = rendered("prod", {"aws:region": region})
    wrong = {r.name: found for r in stack.resources if (found := partitions_named(r.inputs) - {partition})}
    assert wrong == {}
    assert partition in partitions_named([r.inputs for r in stack.resources])
