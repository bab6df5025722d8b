"""The stack's secrets stay out of Pulumi's state: generated in the program on each run, sent to
AWS only through write-only inputs, read back (the token) only by an update, never by a preview.
The generators are replaced by markers so that every place a value could leak is searched for it."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

import pytest

from components import secrets
from components.secrets import Secrets, SecretsArgs
from offline_render.fake_aws import RecordedResource, RecordingMocks, revealed, write_only
from offline_render.program import (
    StackRender,
    apply_overrides,
    decode_user_data,
    launched_instances,
    run_program,
    stack_file_config,
)
from offline_render.report import render_files
from tests.conftest import is_secret, of_type

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
TOKEN = "TokenMarker0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
DJANGO_KEY = "django-key-marker-0123456789abcdefghijklmnopqrstuvwxyz!%*+-.:=^_"
PARAMETER = "aws:ssm/parameter:Parameter"
GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


@pytest.fixture
def markers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "fresh_token", lambda: TOKEN)
    monkeypatch.setattr(secrets, "fresh_django_key", lambda: DJANGO_KEY)


def render_prod(preview: bool, overrides: dict[str, Any] | None = None) -> tuple[StackRender, RecordingMocks]:
    config = apply_overrides(stack_file_config("prod"), overrides or {})
    mocks = RecordingMocks("eu-west-1", None)
    outputs = run_program("prod", config, mocks, preview=preview)
    return StackRender("prod", [], mocks.resources, outputs), mocks


def places(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string inside an input or output value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from places(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from places(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def leaks(resources: list[RecordedResource], outputs: dict[str, Any], marker: str) -> list[str]:
    """Where a marker stands outside the write-only inputs: resource inputs (a provider stores them
    and its outputs in the state), the stack's outputs, user-data in any encoding."""
    found = []
    for resource in resources:
        for key, value in resource.inputs.items():
            if write_only(key):
                continue
            texts = ((p, decode_user_data(text) if key == "userData" else text) for p, text in places(value))
            found += [f"{resource.name}.{key}{p}" for p, text in texts if marker in text]
    found += [f"output {p}" for p, text in places(outputs) if marker in text]
    return found


def test_no_secret_value_reaches_the_state_the_outputs_or_user_data(markers: None) -> None:
    render, _ = render_prod(preview=False)
    assert leaks(render.resources, render.outputs, TOKEN) == []
    assert leaks(render.resources, render.outputs, DJANGO_KEY) == []
    # ... and the marker is there to be found: it is what the write-only inputs carry.
    by_name = {r.name: r.inputs for r in render.resources}
    assert revealed(by_name["prod-redis-group"]["authTokenWo"]) == TOKEN
    assert revealed(by_name["prod-redis-auth-token"]["valueWo"]) == TOKEN
    assert revealed(by_name["prod-redis-auth-token-next"]["valueWo"]) == TOKEN
    assert revealed(by_name["prod-django-secret-key"]["valueWo"]) == DJANGO_KEY
    assert all(is_secret(by_name[name][key]) for name, key in [("prod-redis-group", "authTokenWo")])
    assert not [r for r in render.resources if r.type_.startswith("random:")]
    # Nor the offline render's files (what a reviewer reads, what CI uploads from every pull request).
    for path, file in render_files(StackRender("prod", launched_instances(render.resources), render.resources)).items():
        assert TOKEN not in file.content and DJANGO_KEY not in file.content, path


def test_the_group_takes_the_token_read_back_from_the_next_parameter(markers: None, monkeypatch) -> None:
    # What another run wrote there (an `up` interrupted after the parameter) is what ElastiCache
    # and the instances' parameter get, not this run's fresh value.
    written_earlier = "EarlierRunToken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"
    monkeypatch.setattr(secrets, "read_parameter", lambda name: written_earlier)
    render, _ = render_prod(preview=False)
    by_name = {r.name: r.inputs for r in render.resources}
    assert revealed(by_name["prod-redis-group"]["authTokenWo"]) == written_earlier
    assert revealed(by_name["prod-redis-auth-token"]["valueWo"]) == written_earlier


def test_a_preview_reads_no_secret_back(markers: None, monkeypatch) -> None:
    def refuse(name: str) -> str:
        raise AssertionError(f"a preview read {name}: its role cannot decrypt")

    monkeypatch.setattr(secrets, "read_parameter", refuse)
    render, _ = render_prod(preview=True)
    group = next(r.inputs for r in render.resources if r.name == "prod-redis-group")
    assert revealed(group["authTokenWo"]) == secrets.PREVIEW_PLACEHOLDER


def test_versions_decide_when_a_value_is_sent(markers: None) -> None:
    render, _ = render_prod(preview=False, overrides={"redis.authTokenVersion": 4, "app.secretKeyVersion": 7})
    by_name = {r.name: r.inputs for r in render.resources}
    assert by_name["prod-redis-group"]["authTokenWoVersion"] == 4
    assert by_name["prod-redis-auth-token"]["valueWoVersion"] == 4
    assert by_name["prod-redis-auth-token-next"]["valueWoVersion"] == 4
    assert by_name["prod-django-secret-key"]["valueWoVersion"] == 7


def test_secrets_alone_store_write_only_values_under_the_given_names(build_alone, markers: None) -> None:
    args = SecretsArgs(
        django_secret_key_parameter="/p/t/django/secret-key",
        django_secret_key_version=2,
        auth_token_next_parameter="/p/t/redis/auth-token-next",
        auth_token_version=3,
        kms_key_arn=KEY_ARN,
        tags={"Stack": "t"},
        reads_back=True,
    )
    resources = build_alone(lambda: Secrets("t", args))
    parameters = {r.inputs["name"]: r.inputs for r in of_type(resources, PARAMETER)}
    assert sorted(parameters) == ["/p/t/django/secret-key", "/p/t/redis/auth-token-next"]
    assert all(p["type"] == "SecureString" and "value" not in p for p in parameters.values())
    assert {p["keyId"] for p in parameters.values()} == {KEY_ARN}
    assert parameters["/p/t/redis/auth-token-next"]["valueWoVersion"] == 3
    assert parameters["/p/t/django/secret-key"]["valueWoVersion"] == 2


def test_generated_values_follow_their_character_rules() -> None:
    for _ in range(20):
        token, key = secrets.fresh_token(), secrets.fresh_django_key()
        # ElastiCache: 16-128 characters; letters and digits, nothing to percent-encode in a URL.
        assert re.fullmatch(r"[A-Za-z0-9]{64}", token)
        assert {string.ascii_lowercase, string.ascii_uppercase, string.digits} == {
            chars
            for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
            if set(token) & set(chars)
        }
        # Nothing an env file read by systemd and shells would quote, expand or split.
        assert len(key) == 64 and not set(key) & set("'\"\\$` \t\n#;&|")
    assert len({secrets.fresh_token() for _ in range(20)}) == 20
