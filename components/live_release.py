"""The live release: which release every instance of the stack runs, and what a new or replaced
instance installs at boot. One String parameter in Parameter Store, the single source of truth.

The program creates it from `app.release` and then leaves its value alone (`ignore_changes`):
from then on `python -m ops deploy` / `rollback` write it once every instance runs and passes
verify, and `app-release ensure` reads it at boot. Were the program to own the value, every
`pulumi up` would reset it to the config's release and new instances would boot an old one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class LiveReleaseArgs:
    parameter_name: str
    # Only the parameter's first value: later releases are the ops tool's to record.
    initial_release: str
    tags: dict[str, str]


class LiveRelease(pulumi.ComponentResource):
    parameter_name: pulumi.Output[str]
    parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: LiveReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:release:LiveRelease", name, None, opts)
        parameter = aws.ssm.Parameter(
            f"{name}-live-release",
            name=args.parameter_name,
            description="The live app release (written by python -m ops deploy/rollback; read at boot)",
            type="String",
            # insecure_value: a release name is not a secret (`value` is always marked secret),
            # so previews and the state show it.
            insecure_value=args.initial_release,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["insecure_value"]),
        )
        self.parameter_name = parameter.name
        self.parameter_arn = parameter.arn
        self.register_outputs({"parameterName": self.parameter_name, "parameterArn": self.parameter_arn})
