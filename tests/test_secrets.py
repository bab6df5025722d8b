"""The stack's secrets, built alone: generated passwords, the Django key stored under the name it is given."""

from __future__ import annotations

from components.secrets import Secrets, SecretsArgs
from tests.conftest import is_secret, of_type

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"


def test_secrets_alone_store_generated_values_under_the_given_names(build_alone):
    args = SecretsArgs(
        django_secret_key_parameter="/p/t/django/secret-key",
        auth_token_version=3,
        kms_key_arn=KEY_ARN,
        tags={"Stack": "t"},
    )
    resources = build_alone(lambda: Secrets("t", args))
    parameters = {r.inputs["name"]: r.inputs for r in of_type(resources, "aws:ssm/parameter:Parameter")}
    assert sorted(parameters) == ["/p/t/django/secret-key"]  # the token is stored by Redis, once accepted
    assert all(p["type"] == "SecureString" and is_secret(p["value"]) for p in parameters.values())
    assert {p["keyId"] for p in parameters.values()} == {KEY_ARN}
    (token,) = [r for r in of_type(resources, "random:index/randomPassword:RandomPassword") if "auth-token" in r.name]
    assert token.inputs["keepers"] == {"version": "3"}  # a new version, a new token
