"""The offline main job: run the real Pulumi program for a stack under recording mocks, with no
AWS account and no Pulumi service, and write what each instance would receive.

    python -m tools.render_stack --stack prod --out build/prod

writes build/prod/<instance>/user-data.yaml (the exact #cloud-config), build/prod/<instance>/files/
(every file it writes, at its machine path), and build/prod/resources.md (every resource the
stack would create, with its inputs; secrets shown as [secret]). The same function serves the
tests, the end-to-end harness and the VM tests, so they all start from the program's own output.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
INSTANCE_TYPE = "aws:ec2/instance:Instance"
REPLICATION_GROUP_TYPE = "aws:elasticache/replicationGroup:ReplicationGroup"


@dataclass(frozen=True)
class RecordedResource:
    type_: str
    name: str
    inputs: dict[str, Any]


@dataclass(frozen=True)
class RenderedInstance:
    logical_name: str
    role: str
    tags: dict[str, str]
    user_data: str


@dataclass(frozen=True)
class StackRender:
    stack: str
    instances: list[RenderedInstance]
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type_ == type_]


def mock_id(prefix: str, name: str) -> str:
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[:17]}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would (ids, ARNs, endpoints, auto-names) and records every resource."""

    def __init__(self, region: str, redis_endpoint: str | None) -> None:
        self.region = region
        self.redis_endpoint = redis_endpoint
        self.resources: list[RecordedResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(RecordedResource(args.typ, args.name, copy.deepcopy(inputs)))
        state = {"name": args.name, **inputs}
        kind = args.typ.split(":")[-1]
        prefixes = {
            "Vpc": "vpc",
            "Subnet": "subnet",
            "SecurityGroup": "sg",
            "Instance": "i",
            "NatGateway": "nat",
            "InternetGateway": "igw",
            "RouteTable": "rtb",
            "Eip": "eipalloc",
            "VpcEndpoint": "vpce",
            "SecurityGroupIngressRule": "sgr",
            "SecurityGroupEgressRule": "sgr",
        }
        resource_id = mock_id(prefixes[kind], args.name) if kind in prefixes else f"{args.name}-id"
        arn_base = f"arn:aws:{{}}:{self.region}:{ACCOUNT}"
        if args.typ == "random:index/randomPassword:RandomPassword":
            length = int(inputs.get("length", 32))
            state["result"] = ("Mock0" + hashlib.sha256(args.name.encode()).hexdigest() * 4)[:length]
        elif args.typ == REPLICATION_GROUP_TYPE:
            host = self.redis_endpoint or f"master.{args.name}.abc123.euw1.cache.amazonaws.com"
            state |= {
                "primaryEndpointAddress": host,
                "readerEndpointAddress": self.redis_endpoint or f"replica.{args.name}.abc123.euw1.cache.amazonaws.com",
                "port": inputs.get("port", 6379),
                "arn": arn_base.format("elasticache") + f":replicationgroup:{args.name}",
            }
        elif args.typ == "aws:ssm/parameter:Parameter":
            state["arn"] = arn_base.format("ssm") + f":parameter{inputs['name']}"
        elif args.typ == INSTANCE_TYPE:
            state |= {"arn": arn_base.format("ec2") + f":instance/{resource_id}", "privateIp": "10.40.0.10"}
        elif args.typ.startswith("aws:iam/"):
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:{kind[0].lower() + kind[1:]}/{args.name}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [f"{self.region}{letter}" for letter in "abc"]
            return {"names": zones, "zoneIds": [f"euw1-az{i}" for i in range(1, 4)], "id": self.region}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDAEXAMPLE",
                "id": ACCOUNT,
            }
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws", "id": "aws"}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0a1b2c3d4e5f67890", "name": "debian-12-amd64-20261101-1000", "architecture": "x86_64"}
        raise NotImplementedError(f"no mock for invoke {args.token}")


def stack_file_config(stack: str) -> dict[str, Any]:
    """The stack file's config, as plain values (Pulumi.<stack>.yaml)."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"render_stack: --stack {stack!r}: no {path.name} (stacks: {', '.join(available_stacks())})")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return dict((yaml.load(path.read_text(), Loader=loader) or {}).get("config") or {})


def available_stacks() -> list[str]:
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], project: str = "django-stack") -> dict[str, Any]:
    """Sets dotted paths (`web.count`, `redis.caCertFile`, `aws:region`) in a copy of the config."""
    merged = copy.deepcopy(config)
    for path, value in overrides.items():
        if ":" in path:
            merged[path] = value
            continue
        top, *rest = path.split(".")
        node = merged.setdefault(f"{project}:{top}", {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if rest:
            node[rest[-1]] = value
        else:
            merged[f"{project}:{top}"] = value
    return merged


def _engine_config(config: dict[str, Any]) -> dict[str, str]:
    # The engine hands the program objects as JSON text and scalars as strings.
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def run_program(stack: str, config: dict[str, Any], mocks: RecordingMocks, preview: bool = False) -> dict[str, Any]:
    """Runs __main__.py under these mocks with this config (as `pulumi preview` when `preview`);
    returns the stack's outputs."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="django-stack", stack=stack, preview=preview)
    pulumi.runtime.set_all_config(_engine_config(config))
    outputs: dict[str, Any] = {}
    sys.path.insert(0, str(ROOT))
    try:

        @pulumi.runtime.test
        def program() -> None:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

        program()
        outputs = _resolved_outputs()
    finally:
        sys.path.remove(str(ROOT))
        pulumi.runtime.set_all_config({})
    return outputs


def _resolved_outputs() -> dict[str, Any]:
    stack_resource = pulumi.runtime.settings.get_root_resource()
    return dict(getattr(stack_resource, "outputs", {}) or {}) if stack_resource else {}


def render_stack(
    stack: str = "prod", overrides: dict[str, Any] | None = None, redis_endpoint: str | None = None
) -> StackRender:
    from userdata.render import decode_user_data

    config = apply_overrides(stack_file_config(stack), overrides or {})
    mocks = RecordingMocks(str(config.get("aws:region") or "eu-west-1"), redis_endpoint)
    outputs = run_program(stack, config, mocks)
    instances = [
        RenderedInstance(
            logical_name=r.name.removeprefix(f"{stack}-"),
            role=r.inputs["tags"]["Role"],
            tags=dict(r.inputs["tags"]),
            user_data=decode_user_data(r.inputs["userDataBase64"]),
        )
        for r in mocks.resources
        if r.type_ == INSTANCE_TYPE
    ]
    return StackRender(stack, instances, mocks.resources, outputs)


# --- the offline job's files ---------------------------------------------------------------------

# How the engine marks a secret value on the wire (pulumi.runtime.rpc).
SECRET_SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def _hide_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return "[secret]"
        return {k: _hide_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_secrets(v) for v in value]
    return value


def _public(inputs: dict[str, Any]) -> dict[str, Any]:
    shown = _hide_secrets(inputs)
    if "userDataBase64" in shown:
        shown["userDataBase64"] = "[gzip+base64 #cloud-config: see <instance>/user-data.yaml]"
    return shown


def resource_table(render: StackRender) -> str:
    lines = [
        f"# Resources of stack `{render.stack}` ({len(render.resources)})",
        "",
        "| type | name | inputs |",
        "|---|---|---|",
    ]
    # Registration order varies from run to run (it is async): sort, so two renders diff cleanly.
    for r in sorted(render.resources, key=lambda r: (r.type_, r.name)):
        inputs = json.dumps(_public(r.inputs), sort_keys=True, default=str).replace("|", "\\|")
        lines.append(f"| `{r.type_}` | `{r.name}` | `{inputs}` |")
    return "\n".join(lines) + "\n"


def write_render(render: StackRender, out: Path) -> list[Path]:
    from userdata.render import written_files

    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for instance in render.instances:
        base = out / instance.logical_name
        (base / "files").mkdir(parents=True, exist_ok=True)
        (base / "user-data.yaml").write_text(instance.user_data)
        (base / "tags.json").write_text(json.dumps(instance.tags, indent=2, sort_keys=True) + "\n")
        written += [base / "user-data.yaml", base / "tags.json"]
        for file in written_files(instance.user_data):
            target = base / "files" / file.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            os.chmod(target, int(file.permissions, 8))
            written.append(target)
    (out / "resources.md").write_text(resource_table(render))
    written.append(out / "resources.md")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="prod", help="stack name: a Pulumi.<stack>.yaml must exist")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: build/<stack>)")
    args = parser.parse_args(argv)
    try:
        render = render_stack(args.stack)
    except pulumi.RunError as error:
        print(f"render_stack: {error}", file=sys.stderr)
        return 2
    out = args.out or ROOT / "build" / args.stack
    write_render(render, out)
    roles = ", ".join(f"{i.logical_name} ({i.role})" for i in render.instances)
    print(f"stack {args.stack}: {len(render.resources)} resources, {len(render.instances)} instances: {roles}")
    print(f"wrote {out}/resources.md and one directory per instance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
