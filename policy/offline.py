"""The policy pack, offline: render stacks under the mocks and judge every resource.

    python -m policy.offline                 # every Pulumi.<stack>.yaml
    python -m policy.offline --stack staging

The same policy functions `pulumi preview --policy-pack policy` runs, applied to what the program
would ask AWS for, without an AWS account or a Pulumi backend. Exit 1 when any policy is violated.
"""

from __future__ import annotations

import argparse
import sys

import pulumi

from offline_render.program import StackRender, available_stacks, render_stack
from ops.stack import program_project
from policy import rules


def violations(render: StackRender) -> list[str]:
    """One line per violation: `<resource>: <policy>: <message>`."""
    where = rules.StackId(program_project(), render.stack)
    found = [
        f"{resource.name}: {policy.name}: {message}"
        for resource in render.resources
        for policy in rules.RESOURCE_POLICIES
        for message in policy.check(resource.type_, resource.inputs, where)
    ]
    found += [
        f"{resource.name}: {policy.name}: {message}"
        for resource in render.resources
        for policy in rules.PROTECTION_POLICIES
        for message in policy.check(resource.type_, resource.inputs, resource.protected)
    ]
    stack = [(r.type_, r.name, r.inputs) for r in render.resources]
    return found + [
        f"{render.stack}: {policy.name}: {message}"
        for policy in rules.STACK_POLICIES
        for message in policy.check(stack, where)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.offline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", help="stack name (repeatable; default: every stack file)")
    args = parser.parse_args(argv)
    failed = False
    for stack in args.stack or available_stacks():
        try:
            render = render_stack(stack)
        except pulumi.RunError as error:
            print(f"policy.offline: {error}", file=sys.stderr)
            return 2
        found = violations(render)
        policies = len(rules.RESOURCE_POLICIES) + len(rules.PROTECTION_POLICIES) + len(rules.STACK_POLICIES)
        print(f"stack {stack}: {len(render.resources)} resources, {policies} policies, {len(found)} violations")
        for line in found:
            print(f"  {line}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
