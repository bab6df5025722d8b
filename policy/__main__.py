"""The guardrails policy pack: `pulumi preview --policy-pack policy` (README: "Pull requests and previews")."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.pack import NAME, policies

PolicyPack(name=NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
