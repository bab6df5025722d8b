"""What the instances may do in AWS: be managed by SSM, read their two secrets, the live release
parameter and the app's release artifacts. Nothing else, and no SSH key anywhere.

No AWS-managed policy is attached: AmazonSSMManagedInstanceCore grants ssm:GetParameter(s) on
"*", which would let any instance read every parameter in the account.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# What the SSM agent needs for Session Manager and Run Command: AWS's published
# AmazonSSMManagedInstanceCore (v2) document without ssm:GetParameter and ssm:GetParameters,
# which is what AmazonSSMManagedEC2InstanceDefaultPolicy grants; ssmmessages and ec2messages
# per "Reference: ec2messages, ssmmessages, and other API operations" (Systems Manager guide).
SSM_AGENT_ACTIONS = (
    "ssm:DescribeAssociation",
    "ssm:GetDeployablePatchSnapshotForInstance",
    "ssm:GetDocument",
    "ssm:DescribeDocument",
    "ssm:GetManifest",
    "ssm:ListAssociations",
    "ssm:ListInstanceAssociations",
    "ssm:PutInventory",
    "ssm:PutComplianceItems",
    "ssm:PutConfigurePackageResult",
    "ssm:UpdateAssociationStatus",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)


@dataclass(frozen=True)
class AccessArgs:
    # Exactly the parameters the instances read; SecureStrings here must be encrypted with a key
    # whose policy lets this role decrypt (the stack key does).
    secret_parameter_arns: Sequence[pulumi.Input[str]]
    # The live release parameter (a String): read (GetParameter) by app-release at boot, never written.
    release_parameter_arn: pulumi.Input[str]
    # "bucket/prefix" of the release artifacts, or None when the AMI carries the release.
    artifact_location: str | None
    tags: dict[str, str]


class InstanceAccess(pulumi.ComponentResource):
    instance_profile_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]

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
        aws.iam.RolePolicy(
            f"{name}-ssm-agent",
            role=role.id,
            policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Sid": "SsmAgent", "Effect": "Allow", "Action": list(SSM_AGENT_ACTIONS), "Resource": "*"}
                    ],
                },
                sort_keys=True,
            ),
            opts=child,
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
        self.role_name = role.name
        self.register_outputs({"instanceProfileName": profile.name, "roleArn": role.arn})


def release_artifacts_arns(artifact_location: str) -> list[str]:
    """The release artifacts under "bucket/prefix" and the SHA-256 file beside each, which
    app-release checks before unpacking (the instance role and the S3 endpoint)."""
    return [f"arn:aws:s3:::{artifact_location}*.tar.gz", f"arn:aws:s3:::{artifact_location}*.tar.gz.sha256"]


def _policy_document(parameter_arns: list[str], release_parameter_arn: str, artifact_location: str | None) -> str:
    # No kms:Decrypt here: the stack key's policy grants it to this role, through SSM only.
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
                "Resource": release_artifacts_arns(artifact_location),
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
