"""The stack key: one customer managed KMS key per stack for everything the stack encrypts:
the SecureStrings, Redis at rest (and its snapshots), the CloudWatch log groups, the root volumes,
the alarm topic.

With the AWS-managed `aws/ssm` key any principal in the account that may call SSM decrypts any
SecureString; with this key only the stack's own instance roles (one per kind of machine) can
(through SSM, and only the stack's parameter tree), so a staging machine cannot read prod's secrets whatever IAM says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# AWS's "key administrators" statement (the console's default key policy), without using the
# key and without kms:CreateGrant (a grant to oneself would be a way to use it): grants are
# created only by ElastiCache and EC2, for their own resources.
ADMINISTER_ACTIONS = (
    "kms:CreateAlias",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
)
USE_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey")
# The services the deployer creates encrypted resources through.
DEPLOY_SERVICES = ("ssm", "elasticache", "ec2")
# The service-linked role Auto Scaling launches instances with (AWS: "Required AWS KMS key policy
# for use with encrypted volumes"); it exists once the account has had an Auto Scaling group.
AUTOSCALING_SERVICE_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


@dataclass(frozen=True)
class KeyPolicyInputs:
    region: str
    account_id: str
    # Administers the key and uses it only through SSM (Pulumi writes and reads back the
    # SecureStrings): the account root (IAM policies decide) or a named deploy role.
    administrator_arn: str
    # The instances' roles, one per kind of machine: each reads the stack's SecureStrings.
    instance_role_arns: list[str]
    # The stack's parameter tree, `/<project>/<stack>/`.
    parameter_path: str
    # The names of the stack's log groups start with one of these.
    log_group_prefixes: tuple[str, ...]
    # Instances launched by Auto Scaling (its service-linked role) rather than by the deployer.
    autoscaling: bool
    # The SNS topic (encrypted with this key) the stack's CloudWatch alarms publish to.
    alarm_topic_name: str | None = None
    # The region's partition: the ARNs here start with arn:<partition>.
    partition: str = "aws"
    # The stack creates its database (database.mode rds): RDS encrypts it, Secrets Manager its
    # master user's secret, which the instance roles decrypt.
    database: bool = False


def key_policy(inputs: KeyPolicyInputs) -> dict[str, Any]:
    """The stack key's policy as data (tests read it as JSON, never as text)."""
    region, account = inputs.region, inputs.account_id
    ssm = f"ssm.{region}.amazonaws.com"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AdministerKey",
                "Effect": "Allow",
                "Principal": {"AWS": inputs.administrator_arn},
                "Action": list(ADMINISTER_ACTIONS),
                "Resource": "*",
            },
            # SSM: the provider writes SecureStrings and reads them back (with decryption) on
            # refresh; ElastiCache and EC2: Redis at rest and the root volumes it creates.
            _deployer_uses_through("DeployerUsesKeyThroughServices", inputs, DEPLOY_SERVICES),
            _services_hold_grants("ServicesHoldGrantsForTheirResources", inputs, ("elasticache", "ec2")),
            {
                "Sid": "InstanceRolesReadStackSecrets",
                "Effect": "Allow",
                "Principal": {"AWS": inputs.instance_role_arns},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": ssm},
                    # SSM puts the parameter's ARN in the encryption context: only this tree.
                    "ArnLike": {
                        "kms:EncryptionContext:PARAMETER_ARN": (
                            f"arn:{inputs.partition}:ssm:{region}:{account}:parameter{inputs.parameter_path}*"
                        )
                    },
                },
            },
            {
                # AWS's documented statement for encrypted log groups: the service, limited by
                # the encryption context to this stack's log groups.
                "Sid": "CloudWatchLogsEncryptsStackLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": [
                            f"arn:{inputs.partition}:logs:{region}:{account}:log-group:{prefix}*"
                            for prefix in inputs.log_group_prefixes
                        ]
                    }
                },
            },
            *(_autoscaling_statements(inputs) if inputs.autoscaling else []),
            *([_alarm_topic_statement(inputs, inputs.alarm_topic_name)] if inputs.alarm_topic_name else []),
            *(_database_statements(inputs) if inputs.database else []),
        ],
    }


# What RDS creates for its own resources (storage, Performance Insights) and the master user's
# secret, all encrypted with the stack key (AWS: "Key management" in the RDS guide).
DATABASE_SERVICES = ("rds", "secretsmanager")


def _database_statements(inputs: KeyPolicyInputs) -> list[dict[str, Any]]:
    region, account = inputs.region, inputs.account_id
    return [
        _deployer_uses_through("DeployerUsesKeyThroughDatabaseServices", inputs, DATABASE_SERVICES),
        _services_hold_grants("RdsHoldsGrantsForItsResources", inputs, ("rds",)),
        {
            # Secrets Manager puts the secret's ARN in the encryption context: RDS names its
            # managed secrets rds!db-<id>, and only this stack's database uses this key.
            "Sid": "InstanceRolesReadDatabaseSecret",
            "Effect": "Allow",
            "Principal": {"AWS": inputs.instance_role_arns},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"},
                "ArnLike": {
                    "kms:EncryptionContext:SecretARN": (
                        f"arn:{inputs.partition}:secretsmanager:{region}:{account}:secret:rds!db-*"
                    )
                },
            },
        },
    ]


def _deployer_uses_through(sid: str, inputs: KeyPolicyInputs, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": inputs.administrator_arn},
        "Action": list(USE_ACTIONS),
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "kms:ViaService": services(inputs.region, names),
                "kms:CallerAccount": inputs.account_id,
            }
        },
    }


def _services_hold_grants(sid: str, inputs: KeyPolicyInputs, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": inputs.administrator_arn},
        "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
        "Resource": "*",
        "Condition": {
            "StringEquals": {"kms:ViaService": services(inputs.region, names)},
            "Bool": {"kms:GrantIsForAWSResource": "true"},
        },
    }


def _alarm_topic_statement(inputs: KeyPolicyInputs, topic_name: str) -> dict[str, Any]:
    """AWS (SNS, "compatibility between event sources from AWS services and encrypted topics"):
    CloudWatch needs the key to publish to an encrypted topic; here only this account's alarms,
    only to the stack's alarm topic (SNS's encryption context names the topic)."""
    region, account, arn = inputs.region, inputs.account_id, f"arn:{inputs.partition}"
    return {
        "Sid": "CloudWatchAlarmsPublishToStackTopic",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "kms:EncryptionContext:aws:sns:topicArn": f"{arn}:sns:{region}:{account}:{topic_name}",
                "aws:SourceAccount": account,
            },
            "ArnLike": {"aws:SourceArn": f"{arn}:cloudwatch:{region}:{account}:alarm:*"},
        },
    }


def services(region: str, names: tuple[str, ...]) -> list[str]:
    return [f"{service}.{region}.amazonaws.com" for service in names]


def _autoscaling_statements(inputs: KeyPolicyInputs) -> list[dict[str, Any]]:
    role = {"AWS": f"arn:{inputs.partition}:iam::{inputs.account_id}:{AUTOSCALING_SERVICE_ROLE}"}
    through_ec2 = {"kms:ViaService": f"ec2.{inputs.region}.amazonaws.com"}
    return [
        {
            "Sid": "AutoScalingUsesKeyForRootVolumes",
            "Effect": "Allow",
            "Principal": role,
            "Action": list(USE_ACTIONS),
            "Resource": "*",
            "Condition": {"StringEquals": through_ec2},
        },
        {
            "Sid": "AutoScalingGrantsEc2ForRootVolumes",
            "Effect": "Allow",
            "Principal": role,
            "Action": "kms:CreateGrant",
            "Resource": "*",
            "Condition": {"StringEquals": through_ec2, "Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
    ]


@dataclass(frozen=True)
class StackKeyArgs:
    description: str
    alias_name: str
    region: str
    account_id: pulumi.Input[str]
    administrator_arn: pulumi.Input[str]
    instance_role_arns: Sequence[pulumi.Input[str]]
    parameter_path: str
    log_group_prefixes: tuple[str, ...]
    autoscaling: bool
    # `pulumi destroy` (or a replacement) fails while set: the data it encrypts dies with it.
    protect: bool
    tags: dict[str, str]
    alarm_topic_name: str | None = None
    partition: str = "aws"  # the region's: the ARNs in the key policy start with arn:<partition>
    database: bool = False  # the stack creates its database (KeyPolicyInputs.database)


class StackKey(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:encryption:StackKey", name, None, opts)
        policy = pulumi.Output.all(args.account_id, args.administrator_arn, *args.instance_role_arns).apply(
            lambda values: json.dumps(
                key_policy(
                    KeyPolicyInputs(
                        region=args.region,
                        account_id=values[0],
                        administrator_arn=values[1],
                        instance_role_arns=list(values[2:]),
                        parameter_path=args.parameter_path,
                        log_group_prefixes=args.log_group_prefixes,
                        autoscaling=args.autoscaling,
                        alarm_topic_name=args.alarm_topic_name,
                        partition=args.partition,
                        database=args.database,
                    )
                ),
                sort_keys=True,
            )
        )
        key = aws.kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            # The longest wait AWS allows: a deletion scheduled by mistake can be cancelled.
            deletion_window_in_days=30,
            policy=policy,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.kms.Alias(
            f"{name}-key", name=args.alias_name, target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self)
        )
        self.key_arn = key.arn
        self.register_outputs({"keyArn": key.arn})
