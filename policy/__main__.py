"""The guardrails policy pack: `pulumi preview --policy-pack policy` (docs/security.md, docs/ci.md)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.pack import NAME, policies

PolicyPack(name=NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
