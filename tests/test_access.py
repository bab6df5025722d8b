"""The instance role, built alone: it reads the parameters it is given and the release prefix."""

from __future__ import annotations

import json

from components.access import AccessArgs, InstanceAccess
from tests.conftest import of_type


def policy_statements(resources) -> list[dict]:
    (policy,) = of_type(resources, "aws:iam/rolePolicy:RolePolicy")
    return json.loads(policy.inputs["policy"])["Statement"]


RELEASE_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/release"


def test_access_alone_grants_reading_exactly_the_given_parameters(build_alone):
    arns = ["arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/a", "arn:aws:ssm:eu-west-1:123456789012:parameter/p/t/b"]
    resources = build_alone(
        lambda: InstanceAccess("t", AccessArgs(arns, RELEASE_ARN, "bucket/releases/", {"Stack": "t"}))
    )
    statements = {s["Sid"]: s for s in policy_statements(resources)}
    assert statements["ReadStackSecrets"]["Resource"] == arns
    assert (statements["ReadLiveRelease"]["Action"], statements["ReadLiveRelease"]["Resource"]) == (
        "ssm:GetParameter",
        RELEASE_ARN,
    )
    assert statements["ReadReleaseArtifacts"]["Resource"] == "arn:aws:s3:::bucket/releases/*.tar.gz"
    (profile,) = of_type(resources, "aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == "t-role"


def test_access_alone_without_artifacts_grants_no_s3(build_alone):
    resources = build_alone(
        lambda: InstanceAccess("t", AccessArgs(["arn:aws:ssm:::parameter/p"], RELEASE_ARN, None, {}))
    )
    assert [s["Sid"] for s in policy_statements(resources)] == ["ReadStackSecrets", "ReadLiveRelease"]
