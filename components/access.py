"""What the instances may do in AWS: be managed by SSM, read their two secrets, the live release
parameter and the app's release artifacts; the Beat instance also publish the queue metrics.
Nothing else, and no SSH key anywhere. One role per kind of machine, so no kind holds another's
grants (the Fleet adds each worker kind's lifecycle action on its own group).

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
class KindAccess:
    """One machine kind as its role sees it: its name (`<stack>-<name>-role`) and whether it
    publishes the queue metrics."""

    name: str
    publishes_metrics: bool = False


@dataclass(frozen=True)
class AccessArgs:
    # Exactly the parameters the instances read; SecureStrings here must be encrypted with a key
    # whose policy lets these roles decrypt (the stack key does).
    secret_parameter_arns: Sequence[pulumi.Input[str]]
    # The live release parameter (a String): read (GetParameter) by app-release at boot, never written.
    release_parameter_arn: pulumi.Input[str]
    # "bucket/prefix" of the release artifacts, or None when the AMI carries the release.
    artifact_location: str | None
    tags: dict[str, str]
    # One role and instance profile per kind of machine (web, worker, the Beat worker), so a kind
    # gets only its own grants: the Fleet lets each worker kind complete its own group's
    # lifecycle actions, and only a kind that publishes metrics may.
    kinds: Sequence[KindAccess] = (KindAccess("web"), KindAccess("worker"))
    # Where a publishing kind's role may cloudwatch:PutMetricData (and nowhere else).
    metrics_namespace: str = ""
    # The region's partition: what the ARNs this component writes start with (arn:<partition>:).
    partition: str = "aws"

    def __post_init__(self) -> None:
        publishing = [kind.name for kind in self.kinds if kind.publishes_metrics]
        if publishing and not self.metrics_namespace:
            raise ValueError(f"metrics_namespace: empty while {', '.join(publishing)} publishes metrics")


# The kind whose role and profile keep the names of the role all kinds once shared (UPGRADE.md).
SHARED_ROLE_KIND = "worker"


class InstanceAccess(pulumi.ComponentResource):
    # Kind -> the instance profile its launch template names, and its role.
    instance_profile_names: dict[str, pulumi.Output[str]]
    role_arns: dict[str, pulumi.Output[str]]
    role_names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:access:InstanceAccess", name, None, opts)
        self._name, self._args = name, args
        self.instance_profile_names, self.role_arns, self.role_names = {}, {}, {}
        for kind in args.kinds:
            role, profile = self._kind(kind)
            self.instance_profile_names[kind.name] = profile.name
            self.role_arns[kind.name] = role.arn
            self.role_names[kind.name] = role.name
        self.register_outputs({"instanceProfileNames": self.instance_profile_names, "roleArns": self.role_arns})

    def _options(self, kind: str, shared_name: str) -> pulumi.ResourceOptions:
        aliases = [pulumi.Alias(name=shared_name)] if kind == SHARED_ROLE_KIND else []
        return pulumi.ResourceOptions(parent=self, aliases=aliases)

    def _kind(self, machine: KindAccess) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
        """One kind's role, its grants and its instance profile."""
        name, args, kind = self._name, self._args, machine.name
        role = aws.iam.Role(
            f"{name}-{kind}-role",
            description=f"{kind} instances of this stack",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            tags=args.tags,
            opts=self._options(kind, f"{name}-role"),
        )
        # Session Manager instead of SSH: no port 22, no key pairs, every session audited.
        aws.iam.RolePolicy(
            f"{name}-{kind}-ssm-agent",
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
            opts=self._options(kind, f"{name}-ssm-agent"),
        )
        aws.iam.RolePolicy(
            f"{name}-{kind}-read-secrets-and-releases",
            role=role.id,
            policy=pulumi.Output.all(args.release_parameter_arn, *args.secret_parameter_arns).apply(
                lambda arns: _policy_document(list(arns[1:]), arns[0], args.artifact_location, args.partition)
            ),
            opts=self._options(kind, f"{name}-read-secrets-and-releases"),
        )
        if machine.publishes_metrics:
            aws.iam.RolePolicy(
                f"{name}-{kind}-publish-metrics",
                role=role.id,
                policy=metrics_policy(args.metrics_namespace),
                opts=pulumi.ResourceOptions(parent=self),
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-{kind}-profile", role=role.name, tags=args.tags, opts=self._options(kind, f"{name}-profile")
        )
        return role, profile


def metrics_policy(namespace: str) -> str:
    """PutMetricData has no resource ARN (AWS: "Resource": "*"); the namespace condition is the
    only way to keep the role out of every other namespace, AWS's own included."""
    statement = {
        "Sid": "PublishQueueMetrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)


def database_secret_policy(secret_arn: str) -> str:
    """Exactly the stack database's master user secret (database.mode rds), read by app-secrets at
    boot; decrypting it is the stack key's policy's grant, through Secrets Manager only."""
    statement = {"Sid": "ReadDatabaseSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue"}
    return json.dumps({"Version": "2012-10-17", "Statement": [{**statement, "Resource": secret_arn}]}, sort_keys=True)


def release_artifacts_arns(artifact_location: str, partition: str) -> list[str]:
    """The release artifacts under "bucket/prefix" and the SHA-256 file beside each, which
    app-release checks before unpacking (the instance role and the S3 endpoint)."""
    return [
        f"arn:{partition}:s3:::{artifact_location}*.tar.gz",
        f"arn:{partition}:s3:::{artifact_location}*.tar.gz.sha256",
    ]


def _policy_document(
    parameter_arns: list[str], release_parameter_arn: str, artifact_location: str | None, partition: str
) -> str:
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
                "Resource": release_artifacts_arns(artifact_location, partition),
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
