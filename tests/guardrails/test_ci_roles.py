"""What the CI side promises: the preview role's documented policy (parsed as JSON) can never
read the stacks' secrets, and CODEOWNERS puts the guardrails themselves under review."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests import REPO_ROOT

PREVIEW_POLICY = REPO_ROOT / "docs" / "preview-role-policy.json"
STACK_KEY_ALIAS = "alias/django-stack/prod"  # __main__.py: alias/<project>/<stack>
STATE_KEY_ALIAS = "alias/django-stack-pulumi"  # README: the Pulumi secrets provider's key
PARAMETER = "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/redis/auth-token"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def denies(action: str, resource: str, context: dict[str, list[str]]) -> bool:
    """Whether a Deny statement of the preview policy matches this request (the condition
    operators the document uses: StringLike, ForAnyValue:StringLike)."""
    for statement in json.loads(PREVIEW_POLICY.read_text())["Statement"]:
        if statement["Effect"] != "Deny":
            continue
        if not any(fnmatchcase(action, a) for a in as_list(statement["Action"])):
            continue
        if not any(fnmatchcase(resource, r) for r in as_list(statement["Resource"])):
            continue
        if all(
            any(fnmatchcase(value, pattern) for value in context.get(key, []) for pattern in as_list(patterns))
            for operator, condition in statement.get("Condition", {}).items()
            for key, patterns in condition.items()
            if operator in ("StringLike", "ForAnyValue:StringLike")
        ):
            return True
    return False


@pytest.mark.parametrize("action", ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"])
def test_the_preview_role_never_reads_a_stack_parameter(action: str) -> None:
    assert denies(action, PARAMETER, {})


def test_the_preview_role_never_decrypts_with_a_stack_key_or_through_ssm() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    assert denies("kms:Decrypt", key, {"kms:ResourceAliases": [STACK_KEY_ALIAS]})
    assert denies("kms:Decrypt", key, {"kms:ViaService": ["ssm.eu-west-1.amazonaws.com"]})
    # ... while the state's own key, used directly, stays usable: previews need its secrets.
    assert not denies("kms:Decrypt", key, {"kms:ResourceAliases": [STATE_KEY_ALIAS]})


def codeowners() -> list[tuple[str, list[str]]]:
    rules = []
    for line in (REPO_ROOT / ".github" / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *owners = line.split()
            rules.append((pattern, owners))
    return rules


def owners_of(path: str) -> list[str]:
    """GitHub's rule: the last matching pattern wins (anchored paths and directories only)."""
    found: list[str] = []
    for pattern, owners in codeowners():
        anchored = pattern.lstrip("/")
        if path == anchored or (anchored.endswith("/") and path.startswith(anchored)):
            found = owners
    return found


@pytest.mark.parametrize(
    "path",
    [
        "policy/rules.py",
        ".github/workflows/deploy.yml",
        ".github/actions/pulumi-setup/action.yml",
        ".github/CODEOWNERS",
        "components/access.py",
        "components/encryption.py",
    ],
)
def test_codeowners_must_review_the_guardrails(path: str) -> None:
    assert (REPO_ROOT / path).exists(), f"{path} moved: update CODEOWNERS and this test"
    assert owners_of(path), path
