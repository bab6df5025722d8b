"""The policies in rules.py as pulumi-policy objects, every one mandatory.

Kept apart from __main__.py because constructing a PolicyPack starts the analyzer server. The CLI
runs the pack as `python policy/` with the repository's .venv, where the editable install makes
the package `policy` importable: modules here import each other as `policy.<module>`, as the tests
and policy.offline do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules

NAME = "django-stack-guardrails"


def _resource_validation(check: rules.ResourceCheck) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, rules.StackId.of_urn(args.urn)):
            report_violation(message, None)

    return validate


def _protection_validation(
    check: Callable[[str, Mapping[str, Any], bool], list[str]],
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, bool(args.opts.protect)):
            report_violation(message, None)

    return validate


def _stack_validation(check: rules.StackCheck) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [(r.resource_type, r.name, r.props) for r in args.resources]
        # The engine names the stack only in its resources' URNs (an empty stack: no namespace).
        stack = rules.StackId.of_urn(args.resources[0].urn) if args.resources else rules.StackId("", "")
        for message in check(resources, stack):
            report_violation(message, None)

    return validate


def policies() -> list[Policy]:
    found: list[Policy] = [
        ResourceValidationPolicy(
            name=policy.name,
            description=policy.description,
            validate=_resource_validation(policy.check),
            enforcement_level=EnforcementLevel.MANDATORY,
        )
        for policy in rules.RESOURCE_POLICIES
    ]
    found += [
        ResourceValidationPolicy(
            name=policy.name,
            description=policy.description,
            validate=_protection_validation(policy.check),
            enforcement_level=EnforcementLevel.MANDATORY,
        )
        for policy in rules.PROTECTION_POLICIES
    ]
    found += [
        StackValidationPolicy(
            name=policy.name,
            description=policy.description,
            validate=_stack_validation(policy.check),
            enforcement_level=EnforcementLevel.MANDATORY,
        )
        for policy in rules.STACK_POLICIES
    ]
    return found
