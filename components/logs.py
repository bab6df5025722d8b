"""Where the instances' logs go: one CloudWatch log group per role, created by the program (with
the retention from config, encrypted with the stack key), and each kind of machine's role allowed
to write streams into its own role's group only. The CloudWatch agent on each instance does the writing
(its config: userdata.render.cloudwatch_agent_config).

No logs:CreateLogGroup and no logs:PutRetentionPolicy: a group the program did not create (a
typo in the agent's config, another stack's name) cannot be made from an instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# What the CloudWatch agent calls to ship a log: its streams are created on first write
# (AWS's CloudWatchAgentServerPolicy grants these, on "*", with CreateLogGroup besides).
AGENT_LOG_ACTIONS = ("logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")


@dataclass(frozen=True)
class InstanceLogsArgs:
    # One group per role, by name (`/<project>/<stack>/<role>`): the agent's config names them.
    group_names: Sequence[str]
    retention_days: int
    kms_key_arn: pulumi.Input[str]
    # Kind of machine -> (its role's name, the one group of group_names it writes into).
    writers: Mapping[str, tuple[pulumi.Input[str], str]]
    tags: dict[str, str]


class InstanceLogs(pulumi.ComponentResource):
    group_arns: pulumi.Output[list[str]]

    def __init__(self, name: str, args: InstanceLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:logs:InstanceLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        groups = {
            group_name: aws.cloudwatch.LogGroup(
                f"{name}-logs-{group_name.rsplit('/', 1)[-1]}",
                name=group_name,
                retention_in_days=args.retention_days,
                kms_key_id=args.kms_key_arn,
                tags=args.tags,
                opts=child,
            )
            for group_name in args.group_names
        }
        for kind, (role_name, group_name) in args.writers.items():
            aws.iam.RolePolicy(
                f"{name}-{kind}-ship-logs",
                role=role_name,
                policy=groups[group_name].arn.apply(lambda arn: json.dumps(agent_policy([arn]), sort_keys=True)),
                opts=child,
            )
        arns = pulumi.Output.all(*(group.arn for group in groups.values()))
        self.group_arns = arns
        self.register_outputs({"groupArns": arns})


def agent_policy(group_arns: list[str]) -> dict[str, object]:
    """The groups themselves (DescribeLogStreams) and the streams in them (`<group>:log-stream:*`)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ShipInstanceLogs",
                "Effect": "Allow",
                "Action": list(AGENT_LOG_ACTIONS),
                "Resource": [resource for arn in group_arns for resource in (arn, f"{arn}:log-stream:*")],
            }
        ],
    }
