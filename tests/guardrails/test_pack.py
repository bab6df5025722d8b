"""The policy pack as the Pulumi CLI runs it: `python policy/` serves the analyzer over gRPC on
loopback, and the engine sends each resource's inputs (secrets and all, in its wire form).

These tests play the engine's part with the recorded resources of the prod stack, so they check
the wiring the unit tests cannot: __main__.py starts, every policy is registered as mandatory, a
violation comes back as a mandatory diagnostic, a stack-level violation is reported.
"""

from __future__ import annotations

import copy
import select
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from offline_render.fake_aws import RecordedResource
from offline_render.program import StackRender
from offline_render.report import SECRET_SIG_KEY
from policy import rules
from tests import REPO_ROOT

MANDATORY = analyzer_pb2.MANDATORY


def test_the_pack_runs_from_the_repository_virtualenv() -> None:
    project = yaml.safe_load((REPO_ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    virtualenv = (REPO_ROOT / "policy" / project["runtime"]["options"]["virtualenv"]).resolve()
    assert virtualenv == (REPO_ROOT / ".venv").resolve()
    assert (virtualenv / "bin" / "python").exists()


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    # The CLI's language host runs `<virtualenv>/bin/python <pack directory>` (PulumiPolicy.yaml).
    pack = subprocess.Popen(
        [str(REPO_ROOT / ".venv" / "bin" / "python"), str(REPO_ROOT / "policy")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert pack.stdout is not None
        ready, _, _ = select.select([pack.stdout], [], [], 60)
        assert ready, "the pack printed no port within 60 s"
        port = pack.stdout.readline().strip()
        assert port.isdigit(), f"the pack did not print its port: {port!r} {pack.stderr.read() if pack.stderr else ''}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        pack.terminate()
        pack.wait(timeout=30)


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


def urn(resource_type: str, name: str) -> str:
    return f"urn:pulumi:prod::django-stack::{resource_type}::{name}"


def analyze(analyzer: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, name: str, props: dict[str, Any]) -> Any:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=struct(props), urn=urn(resource_type, name), name=name
    )
    return analyzer.Analyze(request, timeout=30).diagnostics


def resource(render: StackRender, name: str) -> RecordedResource:
    (found,) = [r for r in render.resources if r.name == name]
    return found


def test_every_policy_is_registered_as_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    names = {policy.name: policy.enforcementLevel for policy in info.policies}
    expected = {policy.name for policy in [*rules.RESOURCE_POLICIES, *rules.PROTECTION_POLICIES, *rules.STACK_POLICIES]}
    assert names == dict.fromkeys(expected, MANDATORY)


def test_the_programs_resources_raise_no_diagnostic(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: StackRender
) -> None:
    diagnostics = [
        (r.name, d.policyName, d.message) for r in prod.resources for d in analyze(analyzer, r.type_, r.name, r.inputs)
    ]
    assert diagnostics == []


def test_a_violation_comes_back_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: StackRender) -> None:
    web = next(r for r in prod.of_type(rules.LAUNCH_TEMPLATE) if r.name == "prod-web")
    props = copy.deepcopy(web.inputs)
    props["metadataOptions"]["httpTokens"] = "optional"
    props["userData"] = UNKNOWN_STRING_VALUE  # as in a first preview: judged at `up`
    (diagnostic,) = analyze(analyzer, web.type_, web.name, props)
    assert diagnostic.policyName == "instance-hardened"
    assert diagnostic.enforcementLevel == MANDATORY
    assert "IMDSv2" in diagnostic.message


def test_a_secret_auth_token_arrives_and_satisfies_the_policy(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: StackRender
) -> None:
    group = resource(prod, "prod-redis-group")
    assert SECRET_SIG_KEY in group.inputs["authTokenWo"], "the token travels as a secret"
    assert analyze(analyzer, group.type_, group.name, group.inputs) == []
    without = {k: v for k, v in group.inputs.items() if k != "authTokenWo"}
    (diagnostic,) = analyze(analyzer, group.type_, group.name, without)
    assert diagnostic.policyName == "elasticache-encrypted-with-auth"


def test_the_engines_protect_option_reaches_the_rds_deletion_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from tests.test_rds import with_rds

    (instance,) = [r for r in with_rds().resources if r.type_ == rules.RDS_INSTANCE]
    props = {**instance.inputs, "deletionProtection": False}

    def diagnostics(protect: bool) -> list[str]:
        request = analyzer_pb2.AnalyzeRequest(
            type=instance.type_,
            properties=struct(props),
            urn=urn(instance.type_, instance.name),
            name=instance.name,
            options=analyzer_pb2.AnalyzerResourceOptions(protect=protect),
        )
        return [d.policyName for d in analyzer.Analyze(request, timeout=30).diagnostics]

    assert diagnostics(True) == ["rds-deletion-protection-with-protect"]
    assert diagnostics(False) == []


def test_two_beat_groups_fail_the_stack(analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: StackRender) -> None:
    def analyzed(r: RecordedResource, props: dict[str, Any]) -> analyzer_pb2.AnalyzerResource:
        return analyzer_pb2.AnalyzerResource(
            type=r.type_, properties=struct(props), urn=urn(r.type_, r.name), name=r.name
        )

    groups = prod.of_type(rules.AUTOSCALING_GROUP)
    # The alarms come along: without them the stack would fail broker-and-backlog-alarms.
    alarms = [analyzed(r, r.inputs) for r in prod.of_type(rules.METRIC_ALARM)]
    assert (
        analyzer.AnalyzeStack(
            analyzer_pb2.AnalyzeStackRequest(resources=[*alarms, *[analyzed(r, r.inputs) for r in groups]]), timeout=30
        ).diagnostics
        == []
    )
    beat_tag = {"key": rules.BEAT_TAG, "value": "true", "propagateAtLaunch": True}
    second_beat = [*alarms, *[analyzed(r, {**r.inputs, "tags": [*r.inputs["tags"], beat_tag]}) for r in groups]]
    (diagnostic,) = analyzer.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(resources=second_beat), timeout=30
    ).diagnostics
    assert diagnostic.policyName == rules.SINGLE_BEAT_POLICY
    assert diagnostic.enforcementLevel == MANDATORY


def test_a_stack_without_its_alarms_fails_mandatory(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, prod: StackRender
) -> None:
    groups = [
        analyzer_pb2.AnalyzerResource(type=r.type_, properties=struct(r.inputs), urn=urn(r.type_, r.name), name=r.name)
        for r in prod.of_type(rules.AUTOSCALING_GROUP)
    ]
    diagnostics = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=groups), timeout=30).diagnostics
    assert [(d.policyName, d.enforcementLevel) for d in diagnostics] == [("broker-and-backlog-alarms", MANDATORY)] * 2
