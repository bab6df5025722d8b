"""The guardrails policy pack: `pulumi preview --policy-pack policy` (docs/guardrails.md)."""

from pack import NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
