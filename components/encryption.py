"""The stack key: one customer managed KMS key per stack for everything the stack encrypts.

With the AWS-managed `aws/ssm` key any principal in the account that may call SSM decrypts any
SecureString; with this key only the stack's own instance role can (through SSM, and only the
stack's parameter tree), so a staging machine cannot read prod's secrets whatever IAM says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# AWS's "key administrators" statement (the console's default key policy): everything except
# using the key to encrypt or decrypt.
ADMINISTER_ACTIONS = (
    "kms:Create*",
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


@dataclass(frozen=True)
class KeyPolicyInputs:
    region: str
    account_id: str
    # Administers the key and uses it only through SSM (Pulumi writes and reads back the
    # SecureStrings): the account root (IAM policies decide) or a named deploy role.
    administrator_arn: str
    instance_role_arn: str
    # The stack's parameter tree, `/django-stack/<stack>/`.
    parameter_path: str


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
            {
                # The provider writes SecureStrings and reads them back (with decryption) on refresh.
                "Sid": "DeployerWritesStackSecrets",
                "Effect": "Allow",
                "Principal": {"AWS": inputs.administrator_arn},
                "Action": list(USE_ACTIONS),
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": ssm, "kms:CallerAccount": account}},
            },
            {
                "Sid": "InstanceRoleReadsStackSecrets",
                "Effect": "Allow",
                "Principal": {"AWS": inputs.instance_role_arn},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": ssm},
                    # SSM puts the parameter's ARN in the encryption context: only this tree.
                    "ArnLike": {
                        "kms:EncryptionContext:PARAMETER_ARN": (
                            f"arn:aws:ssm:{region}:{account}:parameter{inputs.parameter_path}*"
                        )
                    },
                },
            },
        ],
    }


@dataclass(frozen=True)
class StackKeyArgs:
    description: str
    alias_name: str
    region: str
    account_id: pulumi.Input[str]
    administrator_arn: pulumi.Input[str]
    instance_role_arn: pulumi.Input[str]
    parameter_path: str
    # `pulumi destroy` (or a replacement) fails while set: the data it encrypts dies with it.
    protect: bool
    tags: dict[str, str]


class StackKey(pulumi.ComponentResource):
    key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:encryption:StackKey", name, None, opts)
        policy = pulumi.Output.all(args.account_id, args.administrator_arn, args.instance_role_arn).apply(
            lambda values: json.dumps(
                key_policy(
                    KeyPolicyInputs(
                        region=args.region,
                        account_id=values[0],
                        administrator_arn=values[1],
                        instance_role_arn=values[2],
                        parameter_path=args.parameter_path,
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
