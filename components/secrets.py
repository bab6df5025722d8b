"""The stack's secrets: generated here, stored as SSM SecureStrings, read on the instances.
The Redis token is stored by the Redis component, once the replication group accepts it.

The values exist only as Pulumi secret Outputs (encrypted in the state) and in Parameter Store;
user-data carries parameter names, never values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

TYPE = "djangostack:secrets:Secrets"


@dataclass(frozen=True)
class SecretsArgs:
    django_secret_key_parameter: str
    # Changing it generates a new token (rotation, see the README).
    auth_token_version: int
    # The stack key (or the configured one): never the account-wide aws/ssm key.
    kms_key_arn: pulumi.Input[str]
    tags: dict[str, str]


class Secrets(pulumi.ComponentResource):
    auth_token: pulumi.Output[str]
    django_secret_key_parameter_name: pulumi.Output[str]
    django_secret_key_parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # ElastiCache accepts 16-128 characters; letters and digits only, because a '#' or '@'
        # in a broker URL must be percent-encoded and kombu has got that wrong before.
        token = random.RandomPassword(
            f"{name}-redis-auth-token",
            length=64,
            special=False,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            keepers={"version": str(args.auth_token_version)},
            opts=child,
        )
        # No quotes, backslashes, '$' or whitespace: the key lands in an env file read by
        # systemd and by shells.
        secret_key = random.RandomPassword(
            f"{name}-django-secret-key", length=64, special=True, override_special="!%*+-.:=^_~", opts=child
        )
        key_parameter = self._parameter(
            f"{name}-django-secret-key",
            args.django_secret_key_parameter,
            "Django SECRET_KEY",
            secret_key.result,
            args,
        )

        self.auth_token = pulumi.Output.secret(token.result)
        self.django_secret_key_parameter_name = key_parameter.name
        self.django_secret_key_parameter_arn = key_parameter.arn
        self.register_outputs({"djangoSecretKeyParameterName": self.django_secret_key_parameter_name})

    def _parameter(
        self, resource_name: str, parameter_name: str, description: str, value: pulumi.Output[str], args: SecretsArgs
    ) -> aws.ssm.Parameter:
        return aws.ssm.Parameter(
            resource_name,
            name=parameter_name,
            description=description,
            type="SecureString",
            key_id=args.kms_key_arn,
            value=value,  # RandomPassword.result is a secret Output already
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]),
        )
