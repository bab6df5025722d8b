"""The stack's secrets, kept out of Pulumi's state: each value is generated in this process on
every run and reaches AWS only through a write-only input (`value_wo`, `auth_token_wo`), which
the provider never stores, and only when that input's version changes. A run whose versions did
not change sends nothing; a preview reads nothing back (its role cannot decrypt).

The Redis token goes through the `next` parameter first: the replication group, then the
parameter the instances read (the Redis component's), take the value read back from it, so an
`up` interrupted between the two finishes with the same token when run again. The Django key
has one parameter; the instances read it at boot.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

TYPE = "djangostack:secrets:Secrets"
# ElastiCache accepts 16-128 printable characters; letters and digits only, because a '#' or '@'
# in a broker URL must be percent-encoded and kombu has got that wrong before.
TOKEN_ALPHABET = string.ascii_letters + string.digits
# No quotes, backslashes, '$' or whitespace: the key lands in an env file read by systemd and shells.
DJANGO_KEY_ALPHABET = string.ascii_letters + string.digits + "!%*+-.:=^_~"
SECRET_LENGTH = 64
# What a preview passes for a value it does not read: write-only inputs are never diffed, so the
# plan shows only the versions.
PREVIEW_PLACEHOLDER = "not-read-during-preview"


def fresh_token() -> str:
    """64 letters and digits with at least one lowercase, uppercase and digit."""
    while True:
        token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(SECRET_LENGTH))
        if any(c.islower() for c in token) and any(c.isupper() for c in token) and any(c.isdigit() for c in token):
            return token


def fresh_django_key() -> str:
    return "".join(secrets.choice(DJANGO_KEY_ALPHABET) for _ in range(SECRET_LENGTH))


def read_parameter(name: str) -> str:
    """A SecureString's current value, decrypted (the deploy role's `up` only)."""
    return aws.ssm.get_parameter(name=name, with_decryption=True).value


@dataclass(frozen=True)
class SecretsArgs:
    django_secret_key_parameter: str
    # A new version stores a newly generated key (rotation, see docs/secrets.md).
    django_secret_key_version: int
    # Where a new token waits until ElastiCache has it; only the deploy role reads it.
    auth_token_next_parameter: str
    # A new version generates a new token (rotation, docs/operations.md).
    auth_token_version: int
    # The stack key (or the configured one): never the account-wide aws/ssm key.
    kms_key_arn: pulumi.Input[str]
    tags: dict[str, str]
    # False in a preview: nothing is read back, the token Output is a placeholder.
    reads_back: bool


class Secrets(pulumi.ComponentResource):
    # The token as stored in the next parameter (a placeholder in a preview).
    auth_token: pulumi.Output[str]
    django_secret_key_parameter_name: pulumi.Output[str]
    django_secret_key_parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        next_token = self._parameter(
            f"{name}-redis-auth-token-next",
            args.auth_token_next_parameter,
            "Redis AUTH token, next (ElastiCache takes it from here; instances never read it)",
            fresh_token(),
            args.auth_token_version,
            args,
        )
        key_parameter = self._parameter(
            f"{name}-django-secret-key",
            args.django_secret_key_parameter,
            "Django SECRET_KEY",
            fresh_django_key(),
            args.django_secret_key_version,
            args,
        )
        if args.reads_back:
            # After the parameter's create or update: the value it holds now, whichever run wrote it.
            stored = next_token.version.apply(lambda _: read_parameter(args.auth_token_next_parameter))
        else:
            stored = pulumi.Output.from_input(PREVIEW_PLACEHOLDER)
        self.auth_token = pulumi.Output.secret(stored)
        self.django_secret_key_parameter_name = key_parameter.name
        self.django_secret_key_parameter_arn = key_parameter.arn
        self.register_outputs({"djangoSecretKeyParameterName": self.django_secret_key_parameter_name})

    def _parameter(
        self, resource_name: str, parameter_name: str, description: str, value: str, version: int, args: SecretsArgs
    ) -> aws.ssm.Parameter:
        return aws.ssm.Parameter(
            resource_name,
            name=parameter_name,
            description=description,
            type="SecureString",
            key_id=args.kms_key_arn,
            value_wo=pulumi.Output.secret(value),
            value_wo_version=version,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
