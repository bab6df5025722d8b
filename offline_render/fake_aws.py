"""A fake AWS for the offline render: Pulumi mocks that answer like AWS would (ids, ARNs,
endpoints, auto-names) and record every resource the program registers, with its inputs."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi

from userdata.layout import partition

ACCOUNT = "123456789012"
# How the engine marks a secret value on the wire (pulumi.runtime.rpc).
SECRET_SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
LAUNCH_TEMPLATE_TYPE = "aws:ec2/launchTemplate:LaunchTemplate"
AUTOSCALING_GROUP_TYPE = "aws:autoscaling/group:Group"
REPLICATION_GROUP_TYPE = "aws:elasticache/replicationGroup:ReplicationGroup"
KMS_KEY_TYPE = "aws:kms/key:Key"
PARAMETER_TYPE = "aws:ssm/parameter:Parameter"


def write_only(key: str) -> bool:
    """The provider's write-only inputs (value_wo, auth_token_wo): sent to AWS, never in its state."""
    return key.endswith("Wo")


def revealed(value: Any) -> Any:
    """A value as sent, without the engine's secret wrapper."""
    if isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG:
        return value.get("value")
    return value


@dataclass(frozen=True)
class RecordedResource:
    type_: str
    name: str
    inputs: dict[str, Any]
    # ResourceOptions.protect: the engine refuses to delete (or replace) the resource.
    protected: bool = False
    # The component it was declared in (`type::name`), None at the stack's top: Pulumi's tree.
    parent: str | None = None

    @property
    def key(self) -> str:
        return f"{self.type_}::{self.name}"


def mock_id(prefix: str, name: str) -> str:
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[:17]}"


def region_code(region: str) -> str:
    """AWS's short region code, as in ElastiCache endpoints and zone ids: eu-west-1 -> euw1,
    ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1."""
    short = {"northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw", "central": "c", "gov": "g"}
    area, *words, number = region.split("-")
    return area + "".join(short.get(word, word[:1]) for word in words) + number


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def mock_uuid(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers like AWS would (ids, ARNs, endpoints, auto-names) and records every resource."""

    def __init__(self, region: str, redis_endpoint: str | None) -> None:
        self.region = region
        self.redis_endpoint = redis_endpoint
        self.resources: list[RecordedResource] = []
        # (type, name) of every resource registered with protect=True; filled by record_options.
        self.protected: set[tuple[str, str]] = set()
        # Parameter Store as the program wrote it (value_wo), read back by ssm.getParameter.
        self.parameter_values: dict[str, str] = {}
        # (type, name) -> its parent component's `type::name`; filled by record_options.
        self.parents: dict[tuple[str, str], str] = {}
        # Every value these mocks made up (ids, ARNs, endpoints, the account): what AWS would
        # answer instead, so the render's report can mark it as a placeholder.
        self.placeholders: set[str] = {ACCOUNT}
        # Each resource's URN as `<parent types$>type::name` (as the engine builds it, without the
        # stack and project) -> the URNs its aliases name: what an existing stack's `up` adopts.
        self.urns: dict[str, list[str]] = {}
        self._qualified_types: dict[int, str] = {}

    def record_options(self, args: pulumi.ResourceTransformationArgs) -> None:
        """A stack transformation: the mocks see inputs only, resource options come this way."""
        if args.opts and args.opts.protect:
            self.protected.add((args.type_, args.name))
        parent = args.opts.parent if args.opts else None
        if parent is not None and parent._type != "pulumi:pulumi:Stack":
            self.parents[(args.type_, args.name)] = f"{parent._type}::{parent._name}"
        self._record_urn(args, parent)

    def _record_urn(self, args: pulumi.ResourceTransformationArgs, parent: pulumi.Resource | None) -> None:
        within = self._qualified_types.get(id(parent)) if parent is not None else None
        self._qualified_types[id(args.resource)] = qualified = f"{within}${args.type_}" if within else args.type_
        aliases = []
        for alias in (args.opts.aliases or []) if args.opts else []:
            # A part the alias leaves out (`...`) is the resource's own. A parent named by its URN
            # (an Output) is not followed: only a parent resource of this run is.
            if not isinstance(alias, pulumi.Alias) or isinstance(alias.parent, pulumi.Output):
                continue
            if isinstance(alias.parent, pulumi.Resource):
                former = self._qualified_types.get(id(alias.parent))
            else:
                former = None if alias.parent is None else within  # None: the stack's top
            type_ = alias.type_ if isinstance(alias.type_, str) else args.type_
            name = alias.name if isinstance(alias.name, str) else args.name
            aliases.append(f"{former}${type_}::{name}" if former else f"{type_}::{name}")
        self.urns[f"{qualified}::{args.name}"] = aliases

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        protected = (args.typ, args.name) in self.protected
        parent = self.parents.get((args.typ, args.name))
        self.resources.append(RecordedResource(args.typ, args.name, copy.deepcopy(inputs), protected, parent))
        if args.typ == PARAMETER_TYPE and "valueWo" in inputs:
            self.parameter_values[inputs["name"]] = revealed(inputs["valueWo"])
        # AWS keeps what a write-only input sent; the provider's state (the outputs) never has it.
        state = {"name": args.name, **{key: value for key, value in inputs.items() if not write_only(key)}}
        kind = args.typ.split(":")[-1]
        prefixes = {
            "Vpc": "vpc",
            "Subnet": "subnet",
            "SecurityGroup": "sg",
            "NatGateway": "nat",
            "InternetGateway": "igw",
            "RouteTable": "rtb",
            "Eip": "eipalloc",
            "VpcEndpoint": "vpce",
            "SecurityGroupIngressRule": "sgr",
            "SecurityGroupEgressRule": "sgr",
            "LaunchTemplate": "lt",
        }
        resource_id = mock_id(prefixes[kind], args.name) if kind in prefixes else f"{args.name}-id"
        arn_base = f"arn:{partition(self.region)}:{{}}:{self.region}:{ACCOUNT}"
        if args.typ == REPLICATION_GROUP_TYPE:
            domain = f"{args.name}.abc123.{region_code(self.region)}.cache.amazonaws.com"
            state |= {
                "primaryEndpointAddress": self.redis_endpoint or f"master.{domain}",
                "readerEndpointAddress": self.redis_endpoint or f"replica.{domain}",
                "port": inputs.get("port", 6379),
                "arn": arn_base.format("elasticache") + f":replicationgroup:{args.name}",
            }
        elif args.typ == "aws:rds/instance:Instance":
            identifier = inputs.get("identifier", args.name)
            secret = arn_base.format("secretsmanager") + f":secret:rds!db-{mock_uuid(args.name)}-AbCdEf"
            state |= {
                "address": f"{identifier}.abcdefghijkl.{self.region}.rds.amazonaws.com",
                "port": inputs.get("port", 5432),
                "identifier": identifier,
                "arn": arn_base.format("rds") + f":db:{identifier}",
                "masterUserSecrets": [{"secretArn": secret, "secretStatus": "active", "kmsKeyId": "key"}],
            }
        elif args.typ == "aws:ssm/parameter:Parameter":
            state["arn"] = arn_base.format("ssm") + f":parameter{inputs['name']}"
        elif args.typ == LAUNCH_TEMPLATE_TYPE:
            # A new template is version 1; AWS numbers each update's version after it.
            state |= {"arn": arn_base.format("ec2") + f":launch-template/{resource_id}", "latestVersion": 1}
        elif args.typ == AUTOSCALING_GROUP_TYPE:
            state["arn"] = (
                arn_base.format("autoscaling") + f":autoScalingGroup:{resource_id}:autoScalingGroupName/{args.name}"
            )
        elif args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state |= {
                "arn": arn_base.format("elasticloadbalancing") + f":loadbalancer/app/{args.name}/{resource_id[-16:]}",
                "arnSuffix": f"app/{args.name}/{resource_id[-16:]}",
                "dnsName": f"{args.name}-1234567890.{self.region}.elb.amazonaws.com",
                "zoneId": "Z32O12XQLNTSW2",
            }
        elif args.typ == "aws:lb/targetGroup:TargetGroup":
            state |= {
                "arn": arn_base.format("elasticloadbalancing") + f":targetgroup/{args.name}/{resource_id[-16:]}",
                "arnSuffix": f"targetgroup/{args.name}/{resource_id[-16:]}",
            }
        elif args.typ == "aws:lb/listener:Listener":
            state["arn"] = arn_base.format("elasticloadbalancing") + f":listener/app/{args.name}/{resource_id[-16:]}"
        elif args.typ == "aws:acm/certificate:Certificate":
            state |= {
                "arn": arn_base.format("acm") + f":certificate/{resource_id}",
                "domainValidationOptions": [
                    {
                        "domainName": inputs["domainName"],
                        "resourceRecordName": f"_0123456789abcdef.{inputs['domainName']}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": "_fedcba9876543210.acm-validations.aws.",
                    }
                ],
            }
        elif args.typ == "aws:acm/certificateValidation:CertificateValidation":
            state["certificateArn"] = inputs["certificateArn"]
        elif args.typ == "aws:route53/record:Record":
            state["fqdn"] = str(inputs["name"]).rstrip(".")
        elif args.typ == KMS_KEY_TYPE:
            key_id = mock_uuid(args.name)
            state |= {"keyId": key_id, "arn": arn_base.format("kms") + f":key/{key_id}"}
            resource_id = key_id
        elif args.typ == "aws:sns/topic:Topic":
            state["arn"] = arn_base.format("sns") + f":{inputs.get('name', args.name)}"
        elif args.typ == "aws:cloudwatch/logGroup:LogGroup":
            # The program's own name when it gives one (state's name is the input's).
            state["arn"] = arn_base.format("logs") + f":log-group:{state['name']}"
        elif args.typ.startswith("aws:iam/"):
            state["arn"] = f"arn:{partition(self.region)}:iam::{ACCOUNT}:{kind[0].lower() + kind[1:]}/{args.name}"
        # What the mocks add to the inputs, except the values they only copy (a record's fqdn).
        made_up = {key: value for key, value in state.items() if key not in inputs and key != "name"}
        given = [*strings_in(inputs), self.redis_endpoint or ""]
        self.placeholders.update(v for v in strings_in(made_up) if not any(v in text for text in given))
        self.placeholders.add(resource_id)
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        # (result, check failures): pulumi iterates the failures, so none is [], never None.
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = [f"{self.region}{letter}" for letter in "abc"]
            zone_ids = [f"{region_code(self.region)}-az{i}" for i in range(1, 4)]
            self.placeholders.update(zone_ids)
            return {"names": zones, "zoneIds": zone_ids, "id": self.region}, []
        if args.token == "aws:ec2/getAmi:getAmi":
            ami = {"id": "ami-0a1b2c3d4e5f67890", "name": "debian-12-amd64-20261101-1000", "architecture": "x86_64"}
            self.placeholders.update([ami["id"], ami["name"]])
            return ami, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            deployer = f"arn:{partition(self.region)}:sts::{ACCOUNT}:assumed-role/django-stack-deploy/github-actions"
            self.placeholders.add(deployer)
            return {"accountId": ACCOUNT, "arn": deployer, "userId": "AROAEXAMPLE:github-actions", "id": ACCOUNT}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            return {"name": name, "value": self.parameter_values[name], "type": "SecureString", "id": name}, []
        raise NotImplementedError(f"no mock for invoke {args.token}")
