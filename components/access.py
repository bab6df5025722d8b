"""What the instances may do in AWS: be managed by SSM, read their two secrets, the live release
parameter and the app's release artifacts. Nothing else, and no SSH key anywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

SSM_MANAGED_INSTANCE_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


@dataclass(frozen=True)
class AccessArgs:
    secret_parameter_arns: Sequence[pulumi.Input[str]]
    # The live release parameter: read (GetParameter) by app-release at boot, never written.
    release_parameter_arn: pulumi.Input[str]
    # "bucket/prefix" of the release artifacts, or None when the AMI carries the release.
    artifact_location: str | None
    tags: dict[str, str]


class InstanceAccess(pulumi.ComponentResource):
    instance_profile_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:access:InstanceAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description="web and worker instances of this stack",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=args.tags,
            opts=child,
        )
        # Session Manager instead of SSH: no port 22, no key pairs, every session audited.
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core", role=role.name, policy_arn=SSM_MANAGED_INSTANCE_CORE, opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-read-secrets-and-releases",
            role=role.id,
            policy=pulumi.Output.all(args.release_parameter_arn, *args.secret_parameter_arns).apply(
                lambda arns: _policy_document(list(arns[1:]), arns[0], args.artifact_location)
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=args.tags, opts=child)

        self.instance_profile_name = profile.name
        self.role_arn = role.arn
        self.register_outputs({"instanceProfileName": profile.name, "roleArn": role.arn})


def _policy_document(parameter_arns: list[str], release_parameter_arn: str, artifact_location: str | None) -> str:
    # Parameters encrypted with the AWS-managed aws/ssm key need no kms:Decrypt grant.
    statements: list[dict[str, object]] = [
        {"Sid": "ReadStackSecrets", "Effect": "Allow", "Action": "ssm:GetParameters", "Resource": parameter_arns},
        {"Sid": "ReadLiveRelease", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": release_parameter_arn},
    ]
    if artifact_location:
        # The app's release prefix, not one key: a deploy or rollback installs other releases.
        statements.append(
            {
                "Sid": "ReadReleaseArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{artifact_location}*.tar.gz",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
