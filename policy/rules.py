"""What must never reach AWS, whatever a stack's config says: one pure function per policy.

Each resource policy is `check(resource_type, props) -> list[str]` (one message per violation,
empty when compliant); the stack policy takes every resource as (type, name, props). `props`
are the resource's inputs as the engine sees them: camelCase keys, numbers as floats. The same
functions judge the engine's inputs (`__main__.py`, the policy pack) and what the program's
mocks record (`offline_render`, the tests), so the tests exercise what `pulumi preview` runs.

During a preview some inputs are not known yet (an id, the user-data that embeds the Redis
endpoint). A value that is unknown is not judged here: the engine runs the pack again during
`pulumi up`, with every input known, before it creates or updates the resource.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from ipaddress import ip_network
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import yaml
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

INSTANCE: Final = "aws:ec2/instance:Instance"
ELASTIC_IP: Final = "aws:ec2/eip:Eip"
ELASTIC_IP_ASSOCIATION: Final = "aws:ec2/eipAssociation:EipAssociation"
REPLICATION_GROUP: Final = "aws:elasticache/replicationGroup:ReplicationGroup"
CACHE_CLUSTER: Final = "aws:elasticache/cluster:Cluster"
SECURITY_GROUP: Final = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE: Final = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE: Final = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
AUTOSCALING_GROUP: Final = "aws:autoscaling/group:Group"
LISTENERS: Final = frozenset({"aws:lb/listener:Listener", "aws:alb/listener:Listener"})
DEFAULT_SECURITY_GROUP: Final = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
ROLE: Final = "aws:iam/role:Role"
ROLE_POLICY: Final = "aws:iam/rolePolicy:RolePolicy"
MANAGED_POLICY: Final = "aws:iam/policy:Policy"
POLICY_ATTACHMENT: Final = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PARAMETER: Final = "aws:ssm/parameter:Parameter"
LOG_GROUP: Final = "aws:cloudwatch/logGroup:LogGroup"
METRIC_ALARM: Final = "aws:cloudwatch/metricAlarm:MetricAlarm"
RDS_INSTANCE: Final = "aws:rds/instance:Instance"
RDS_PARAMETER_GROUP: Final = "aws:rds/parameterGroup:ParameterGroup"

REDIS_PORT: Final = 6379
SSH_PORT: Final = 22
# The only ports the whole internet may reach (a load balancer's listeners).
WORLD_PORTS: Final = frozenset({80, 443})
# TLS 1.2 and 1.3 only, forward secrecy (AWS's TLS13 family of ALB policies).
MODERN_TLS_POLICY_PREFIX: Final = "ELBSecurityPolicy-TLS13-1-2-"
# `celery-beat=true` on exactly one worker: userdata/layout.py BEAT_TAG (the pack runs alone,
# without the repository on its path; a test holds the two equal).
BEAT_TAG: Final = "celery-beat"
# What a stack must page on (userdata/layout.py's metric contract; a test holds the two equal): a
# full broker refuses new tasks (noeviction), and a growing backlog means tasks wait.
BROKER_MEMORY_METRIC: Final = ("AWS/ElastiCache", "DatabaseMemoryUsagePercentage")
QUEUE_BACKLOG_METRIC_NAME: Final = "QueueBacklog"
METRICS_NAMESPACE_ROOT: Final = "DjangoStack/Celery"


@dataclass(frozen=True)
class StackId:
    """The project and stack a resource belongs to, as its URN names them."""

    project: str
    stack: str

    @classmethod
    def of_urn(cls, urn: str) -> StackId:
        # urn:pulumi:<stack>::<project>::<type chain>::<name>
        stack, project = urn.removeprefix("urn:pulumi:").split("::")[:2]
        return cls(project, stack)

    @property
    def metrics_namespace(self) -> str:
        """The one namespace this stack's Beat may write (userdata/layout.py metrics_namespace)."""
        return f"{METRICS_NAMESPACE_ROOT}/{self.project}/{self.stack}"


# How the engine marks a secret on the wire; the mocks record secrets in this form, the policy
# SDK hands them over already unwrapped.
_SECRET_SIG_KEY: Final = "4dabf18193072939515e22adb298388d"
_SECRET_SIG: Final = "1b47061264138c4ac30d75fd1eb44270"
_UNKNOWN_SENTINELS: Final = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


class _Unknown:
    """A value the engine cannot know during a preview."""

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Final = _Unknown()


# --- reading props: secrets unwrapped, unknowns explicit -----------------------------------------


def _reveal(value: Any) -> Any:
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    if isinstance(value, Mapping) and _SECRET_SIG_KEY in list(value):
        return _reveal(_item(value, "value"))
    return value


def _item(container: Mapping[str, Any] | Sequence[Any], key: Any) -> Any:
    # The SDK's proxies raise on reading an unknown value; `in` and `.get` read it too, so
    # every read goes through here.
    try:
        return container[key]
    except UnknownValueError:
        return UNKNOWN


def field(props: Any, *path: str) -> Any:
    """props[path[0]][path[1]]...; None when absent, UNKNOWN when not known yet."""
    value = props
    for key in path:
        value = _reveal(value)
        if value is UNKNOWN:
            return UNKNOWN
        if not isinstance(value, Mapping) or key not in list(value):
            return None
        value = _item(value, key)
    return _reveal(value)


def elements(value: Any) -> Iterator[Any]:
    """The items of a list input (possibly a proxy); nothing for an absent or unknown list."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        for index in range(len(value)):
            yield _reveal(_item(value, index))


def _is_set(value: Any) -> bool:
    """Present and non-empty, or to be computed (an unknown value will be set to something)."""
    return value is UNKNOWN or (value is not None and value != "" and value is not False)


# --- ElastiCache ---------------------------------------------------------------------------------


def elasticache_encrypted_with_auth(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Redis on ElastiCache: TLS required in transit, encrypted at rest, an AUTH token."""
    if resource_type == CACHE_CLUSTER:
        # A cluster inside a replication group inherits the group's settings, judged there.
        if _is_set(field(props, "replicationGroupId")) or field(props, "engine") == "memcached":
            return []
        return ["a standalone aws.elasticache.Cluster has no AUTH token or at-rest encryption: use a ReplicationGroup"]
    if resource_type != REPLICATION_GROUP:
        return []
    problems = []
    if field(props, "transitEncryptionEnabled") not in (True, UNKNOWN):
        problems.append("transitEncryptionEnabled must be true (TLS between clients and Redis)")
    if field(props, "transitEncryptionMode") == "preferred":
        problems.append("transitEncryptionMode 'preferred' still accepts plaintext clients; use 'required'")
    if field(props, "atRestEncryptionEnabled") not in (True, UNKNOWN):
        problems.append("atRestEncryptionEnabled must be true (snapshots and swap encrypted)")
    if not (_is_set(field(props, "authToken")) or _is_set(field(props, "authTokenWo"))):
        problems.append("authToken is missing: every client must authenticate (Redis AUTH)")
    return problems


def secrets_write_only(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A secret value goes to AWS through a write-only input, which the provider never stores:
    an `authToken` or a SecureString's `value` would sit in the state, which previews and anyone
    holding the state's key can read."""
    if resource_type == REPLICATION_GROUP and _is_set(field(props, "authToken")):
        return ["authToken is stored in the Pulumi state; send it as authTokenWo with authTokenWoVersion"]
    if resource_type == PARAMETER and field(props, "type") == "SecureString" and _is_set(field(props, "value")):
        return ["a SecureString's value is stored in the Pulumi state; send it as valueWo with valueWoVersion"]
    return []


# --- RDS ------------------------------------------------------------------------------------------


def rds_private(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A database only the stack's hosts reach: no public address, in a subnet group the stack names."""
    if resource_type != RDS_INSTANCE:
        return []
    problems = []
    if field(props, "publiclyAccessible") not in (False, UNKNOWN):
        problems.append("publiclyAccessible must be false: the database gets no public address")
    if not _is_set(field(props, "dbSubnetGroupName")):
        problems.append("dbSubnetGroupName is not set: RDS would use the default VPC's subnets; name private ones")
    return problems


def rds_encrypted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Storage, snapshots, the managed password's secret and Performance Insights under the stack's key;
    the master password made by RDS (manageMasterUserPassword), never an input the state keeps."""
    if resource_type != RDS_INSTANCE:
        return []
    problems = []
    if field(props, "storageEncrypted") not in (True, UNKNOWN):
        problems.append("storageEncrypted must be true (storage, backups and snapshots encrypted)")
    if not _customer_key(field(props, "kmsKeyId")):
        problems.append("kmsKeyId is not set: encrypt the database with the stack's key, not aws/rds")
    if _is_set(field(props, "password")) or _is_set(field(props, "passwordWo")):
        problems.append("a master password input: use manageMasterUserPassword (RDS keeps it in Secrets Manager)")
    elif field(props, "manageMasterUserPassword") not in (True, UNKNOWN):
        problems.append("manageMasterUserPassword must be true: RDS makes and rotates the password")
    elif not _customer_key(field(props, "masterUserSecretKmsKeyId")):
        problems.append("masterUserSecretKmsKeyId is not set: keep the password's secret under the stack's key")
    return problems


def rds_tls_forced(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """PostgreSQL refuses plain-text connections: the instance's own parameter group sets rds.force_ssl=1."""
    if resource_type == RDS_INSTANCE and not _is_set(field(props, "parameterGroupName")):
        return ["parameterGroupName is not set: name a parameter group with rds.force_ssl=1"]
    family = field(props, "family")
    if resource_type != RDS_PARAMETER_GROUP or not (isinstance(family, str) and family.startswith("postgres")):
        return []
    forced = [
        field(parameter, "value")
        for parameter in elements(field(props, "parameters"))
        if field(parameter, "name") == "rds.force_ssl"
    ]
    if not any(value in ("1", UNKNOWN) for value in forced):
        return ["rds.force_ssl is not 1: the server would accept plain-text connections"]
    return []


def rds_deletion_protection_with_protect(resource_type: str, props: Mapping[str, Any], protected: bool) -> list[str]:
    """A protected database (the resource option, security.protect) refuses deletion in AWS too,
    and leaves a final snapshot whatever deletes it."""
    if resource_type != RDS_INSTANCE or not protected:
        return []
    problems = []
    if field(props, "deletionProtection") not in (True, UNKNOWN):
        problems.append("deletionProtection must be true on a protected database")
    if field(props, "skipFinalSnapshot") not in (False, UNKNOWN) or not _is_set(
        field(props, "finalSnapshotIdentifier")
    ):
        problems.append("a protected database keeps a final snapshot: skipFinalSnapshot false, finalSnapshotIdentifier")
    return problems


# --- security group ingress ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ingress:
    """One ingress permission, whatever resource type expressed it."""

    protocol: str
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...]
    prefix_lists: int
    group_sources: int

    @property
    def all_ports(self) -> bool:
        return self.protocol in ("-1", "all")

    def covers(self, port: int) -> bool:
        if self.all_ports:
            return True
        if self.protocol not in ("tcp", "6", "udp", "17") or self.from_port is None or self.to_port is None:
            return False
        return self.from_port <= port <= self.to_port

    @property
    def world(self) -> tuple[str, ...]:
        return tuple(cidr for cidr in self.cidrs if _prefix_length(cidr) == 0)

    @property
    def only_web_ports(self) -> bool:
        return (
            self.protocol in ("tcp", "6", "udp", "17")
            and self.from_port == self.to_port
            and self.from_port in WORLD_PORTS
        )

    def describe(self) -> str:
        return "all ports" if self.all_ports else f"{self.protocol} {self.from_port}-{self.to_port}"


def _prefix_length(cidr: str) -> int | None:
    try:
        return ip_network(cidr, strict=False).prefixlen
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in elements(value) if isinstance(item, str))


def _count(value: Any) -> int:
    return sum(1 for item in elements(value) if _is_set(item))


def ingress_permissions(resource_type: str, props: Mapping[str, Any]) -> list[Ingress]:
    """Every ingress permission a resource grants: inline rules, SecurityGroupRule, IngressRule.

    A permission whose protocol or ports are not known yet is left out (judged at `up`).
    """
    if resource_type == INGRESS_RULE:
        permission = _ingress(
            protocol=field(props, "ipProtocol"),
            from_port=field(props, "fromPort"),
            to_port=field(props, "toPort"),
            cidrs=tuple(c for c in (field(props, "cidrIpv4"), field(props, "cidrIpv6")) if isinstance(c, str)),
            prefix_lists=int(_is_set(field(props, "prefixListId"))),
            group_sources=int(_is_set(field(props, "referencedSecurityGroupId"))),
        )
        return [permission] if permission else []
    if resource_type == SECURITY_GROUP_RULE:
        if field(props, "type") != "ingress":
            return []
        permission = _rule_ingress(props)
        return [permission] if permission else []
    if resource_type == SECURITY_GROUP:
        found = (_rule_ingress(rule) for rule in elements(field(props, "ingress")) if isinstance(rule, Mapping))
        return [permission for permission in found if permission]
    return []


def _rule_ingress(rule: Mapping[str, Any]) -> Ingress | None:
    # aws.ec2.SecurityGroupRule and inline SecurityGroup rules share these field names.
    return _ingress(
        protocol=field(rule, "protocol"),
        from_port=field(rule, "fromPort"),
        to_port=field(rule, "toPort"),
        cidrs=_strings(field(rule, "cidrBlocks")) + _strings(field(rule, "ipv6CidrBlocks")),
        prefix_lists=_count(field(rule, "prefixListIds")),
        group_sources=_count(field(rule, "securityGroups"))
        + int(_is_set(field(rule, "sourceSecurityGroupId")))
        + int(field(rule, "self") is True),
    )


def _ingress(
    *, protocol: Any, from_port: Any, to_port: Any, cidrs: tuple[str, ...], prefix_lists: int, group_sources: int
) -> Ingress | None:
    if not isinstance(protocol, str):
        return None
    protocol = protocol.lower()
    ports = (_port(from_port), _port(to_port))
    if protocol not in ("-1", "all") and UNKNOWN in (from_port, to_port):
        return None
    return Ingress(protocol, ports[0], ports[1], cidrs, prefix_lists, group_sources)


def no_redis_ingress_from_cidr(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Redis is reached from security groups only: never from an address range."""
    return [
        f"ingress to {REDIS_PORT} ({permission.describe()}) from "
        + (", ".join(permission.cidrs) or "a prefix list")
        + ": allow the web and worker security groups instead"
        for permission in ingress_permissions(resource_type, props)
        if permission.covers(REDIS_PORT) and (permission.cidrs or permission.prefix_lists)
    ]


def no_ssh_ingress(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No port 22 from anywhere: instances are reached with SSM Session Manager."""
    return [
        f"ingress to port {SSH_PORT} ({permission.describe()}): use SSM Session Manager, not SSH"
        for permission in ingress_permissions(resource_type, props)
        if permission.covers(SSH_PORT)
    ]


def no_world_ingress_outside_web(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """0.0.0.0/0 and ::/0 may reach 80 and 443 only."""
    return [
        f"ingress from {', '.join(permission.world)} to {permission.describe()}: "
        f"the internet may reach ports {sorted(WORLD_PORTS)} only, each alone"
        for permission in ingress_permissions(resource_type, props)
        if permission.world and not permission.only_web_ports
    ]


# --- instances -----------------------------------------------------------------------------------


def instance_hardened(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """IMDSv2 only, no public IP, no key pair, encrypted volumes: on an instance, and on a launch
    template (what every Auto Scaling instance is launched from)."""
    if resource_type in (ELASTIC_IP, ELASTIC_IP_ASSOCIATION):
        return _elastic_ip_on_an_instance(resource_type, props)
    if resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    problems = []
    tokens, endpoint = field(props, "metadataOptions", "httpTokens"), field(props, "metadataOptions", "httpEndpoint")
    if tokens not in ("required", UNKNOWN) and endpoint not in ("disabled", UNKNOWN):
        problems.append(
            f"metadataOptions.httpTokens is {tokens!r}: IMDSv2 must be required "
            "(IMDSv1 hands the instance role's credentials to any SSRF)"
        )
    # An unknown keyName still names a key pair: one the stack creates in the same update.
    if _is_set(field(props, "keyName")):
        problems.append(f"keyName {field(props, 'keyName')!r}: no key pairs (SSM Session Manager instead of SSH)")
    if resource_type == INSTANCE:
        # Left out, the subnet's mapPublicIpOnLaunch decides: only an explicit false is known safe.
        if field(props, "associatePublicIpAddress") not in (False, UNKNOWN):
            problems.append(
                f"associatePublicIpAddress is {field(props, 'associatePublicIpAddress')!r}: set it to false "
                "(instances live in private subnets with no public IP)"
            )
        if field(props, "rootBlockDevice", "encrypted") not in (True, UNKNOWN):
            problems.append("rootBlockDevice.encrypted must be true (an explicit encrypted root volume)")
        return problems
    interfaces = [i for i in elements(field(props, "networkInterfaces")) if isinstance(i, Mapping)]
    public = [field(i, "associatePublicIpAddress") for i in interfaces]
    if not interfaces or any(not _false(value) for value in public):
        problems.append(
            f"networkInterfaces[].associatePublicIpAddress is {public or None!r}: set it to false on every "
            "interface (instances live in private subnets with no public IP)"
        )
    volumes = [m for m in elements(field(props, "blockDeviceMappings")) if isinstance(m, Mapping)]
    encrypted = [field(m, "ebs", "encrypted") for m in volumes]
    if not volumes or any(not _true(value) for value in encrypted):
        problems.append(
            f"blockDeviceMappings[].ebs.encrypted is {encrypted or None!r}: every volume, the root one "
            "included, must be explicitly encrypted"
        )
    return problems


# Launch templates' nested booleans are strings on the wire ("true"/"false").
def _false(value: Any) -> bool:
    return value is UNKNOWN or value is False or value == "false"


def _true(value: Any) -> bool:
    return value is UNKNOWN or value is True or value == "true"


def _elastic_ip_on_an_instance(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    # An Elastic IP gives an instance a public IP whatever the instance says; NAT gateways take
    # theirs by allocation id, which is not judged here.
    target = field(props, "instance") if resource_type == ELASTIC_IP else field(props, "instanceId")
    if not _is_set(target):
        return []
    return [f"an Elastic IP attached to instance {target!r}: instances have no public IP"]


# --- user-data -----------------------------------------------------------------------------------

_REDISS_URL = re.compile(r"rediss://[^\s'\"`<>]*", re.IGNORECASE)
_VERIFIED = {"required", "cert_required"}


def user_data_text(props: Mapping[str, Any], resource_type: str = INSTANCE) -> str | None:
    """The user-data as text: an instance's plain `userData` or its `userDataBase64`, a launch
    template's `userData` (always base64); gzip or not."""
    plain = field(props, "userData")
    if resource_type == LAUNCH_TEMPLATE:
        return _decoded(plain) if isinstance(plain, str) else None
    if isinstance(plain, str):
        return plain
    encoded = field(props, "userDataBase64")
    return _decoded(encoded) if isinstance(encoded, str) else None


def _written_file_texts(document: str) -> list[str]:
    """Contents of cloud-config write_files entries stored encoded (b64, gzip), decoded."""
    try:
        parsed = yaml.safe_load(document)
    except yaml.YAMLError:
        return []
    if not isinstance(parsed, dict):
        return []
    texts = []
    for entry in parsed.get("write_files") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            continue
        encoding = str(entry.get("encoding", "")).lower()
        if "b64" in encoding or "base64" in encoding:
            texts.append(_decoded(entry["content"]))
    return texts


def _decoded(encoded: str) -> str:
    """base64 (of gzip or of plain text) to text; the input itself when it is not base64."""
    try:
        raw = base64.b64decode(encoded, validate=True)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (binascii.Error, ValueError, OSError, EOFError):
        return encoded
    return raw.decode(errors="replace")


def unverified_rediss_urls(text: str) -> list[str]:
    """Every rediss:// URL in the text that does not say ssl_cert_reqs=required.

    A bare rediss:// URL makes kombu and redis-py connect with certificate verification off.
    """
    unverified = []
    for url in _REDISS_URL.findall(text):
        values = parse_qs(urlsplit(url).query).get("ssl_cert_reqs", [])
        if not values or any(value.lower() not in _VERIFIED for value in values):
            unverified.append(url)
    return unverified


def _redact(url: str) -> str:
    # Never echo a password that may sit in the URL into a preview comment.
    return re.sub(r"(rediss://)[^@/]*@", r"\1***@", url, flags=re.IGNORECASE)


def user_data_verifies_redis_tls(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No rediss:// URL in user-data (or a file it writes) without certificate verification."""
    if resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    document = user_data_text(props, resource_type)
    if document is None:
        return []
    return [
        f"user-data has {_redact(url)}: add ssl_cert_reqs=required, or the broker connection "
        "is encrypted but never verified"
        for text in [document, *_written_file_texts(document)]
        for url in unverified_rediss_urls(text)
    ]


# --- IAM: Parameter Store reads ----------------------------------------------------------------

_PARAMETER_READS: Final = (
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
)
# AWS-managed policies that allow ssm:GetParameter* on "*" (their published documents), in any
# partition (arn:aws-us-gov:iam::aws:policy/..., arn:aws-cn:...).
_MANAGED_POLICY_ARN = re.compile(r"\Aarn:aws(-[a-z]+)*:iam::aws:policy/(?P<name>.+)\Z")
_MANAGED_PARAMETER_READERS: Final = frozenset(
    {
        "AmazonSSMManagedInstanceCore",
        "service-role/AmazonEC2RoleforSSM",
        "AmazonSSMReadOnlyAccess",
        "AmazonSSMFullAccess",
        "ReadOnlyAccess",
        "PowerUserAccess",
        "AdministratorAccess",
    }
)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return list(elements(value)) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def _allows(statement: Mapping[str, Any], action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        return True  # everything it does not name, this action included
    return any(fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(statement.get("Action")))


def _reads_parameters(statement: Mapping[str, Any]) -> bool:
    return any(_allows(statement, action) for action in _PARAMETER_READS)


def _names_a_parameter_tree(resource: str) -> bool:
    """`arn:aws:ssm:<region>:<account>:parameter/<tree>/...` with a literal first segment."""
    parts = resource.split(":", 5)
    if len(parts) < 6 or not parts[5].startswith("parameter/"):
        return False
    first_segment = parts[5].removeprefix("parameter/").split("/")[0]
    return bool(first_segment) and not any(c in first_segment for c in "*?")


def _policy_documents(resource_type: str, props: Mapping[str, Any]) -> list[Any]:
    if resource_type in (ROLE_POLICY, MANAGED_POLICY):
        return [field(props, "policy")]
    if resource_type == ROLE:
        return [field(policy, "policy") for policy in elements(field(props, "inlinePolicies"))]
    return []


def no_parameter_reads_on_everything(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No role of the stack may read Parameter Store beyond named parameter trees: an instance
    that reads every parameter reads every other stack's secrets."""
    attached = []
    if resource_type == POLICY_ATTACHMENT:
        attached = [field(props, "policyArn")]
    elif resource_type == ROLE:
        attached = list(elements(field(props, "managedPolicyArns")))
    problems = [
        f"{arn} allows ssm:GetParameter* on every parameter: grant the stack's parameters by ARN instead"
        for arn in attached
        if (managed := _MANAGED_POLICY_ARN.match(str(arn))) and managed["name"] in _MANAGED_PARAMETER_READERS
    ]
    for statement in _statements(resource_type, props):
        if not _reads_parameters(statement):
            continue
        if "NotResource" in statement:
            problems.append("a statement allows ssm:GetParameter* with NotResource: name the parameters")
            continue
        wide = [str(r) for r in _as_list(statement.get("Resource")) if not _names_a_parameter_tree(str(r))]
        if wide:
            problems.append(f"ssm:GetParameter* on {', '.join(wide)}: grant parameters by ARN under the stack's tree")
    return problems


def _statements(resource_type: str, props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every statement of the policy documents a resource carries, where they are known."""
    for document in _policy_documents(resource_type, props):
        if not isinstance(document, str):
            continue  # unknown during preview: judged at `up`
        try:
            statements = _as_list(json.loads(document).get("Statement"))
        except (ValueError, AttributeError):
            continue
        yield from (statement for statement in statements if isinstance(statement, Mapping))


# --- IAM: what one machine may do to the others ---------------------------------------------------


def instance_grants_scoped(resource_type: str, props: Mapping[str, Any], stack: StackId) -> list[str]:
    """PutMetricData only into the stack's own namespace (the action has no resource ARN: without
    the condition a role could write any metric, the backlog the workers scale on included; with
    another stack's namespace, that stack's), and lifecycle actions and health reports only on
    named groups (or a worker could release another group's hold, or have another group's
    instances replaced)."""
    problems = []
    for statement in _statements(resource_type, props):
        if _allows(statement, "cloudwatch:PutMetricData"):
            condition = statement.get("Condition")
            equals = condition.get("StringEquals", {}) if isinstance(condition, Mapping) else {}
            namespaces = [str(n) for n in _as_list(equals.get("cloudwatch:namespace", []))]
            if not namespaces or any(c in n for n in namespaces for c in "*?"):
                problems.append(
                    "cloudwatch:PutMetricData without a StringEquals cloudwatch:namespace condition naming "
                    "the namespace: the role could write any metric"
                )
            elif others := sorted(set(namespaces) - {stack.metrics_namespace}):
                problems.append(
                    f"cloudwatch:PutMetricData into {', '.join(others)}: only the stack's own namespace "
                    f"({stack.metrics_namespace}), or one stack's machines write another's metrics"
                )
        for action in ("autoscaling:CompleteLifecycleAction", "autoscaling:SetInstanceHealth"):
            if not _allows(statement, action):
                continue
            resources = [str(r) for r in _as_list(statement.get("Resource"))]
            unnamed = [r for r in resources if ":autoScalingGroupName/" not in r or "*" in r or "?" in r]
            if "NotResource" in statement or unnamed:
                problems.append(
                    f"{action} on {', '.join(unnamed) or 'NotResource'}: name the instance's own Auto Scaling group"
                )
    return problems


# --- customer managed keys -----------------------------------------------------------------------

_AWS_MANAGED_KEY = re.compile(r"(^|:)alias/aws/")


def _customer_key(value: Any) -> bool:
    return value is UNKNOWN or (isinstance(value, str) and bool(value) and not _AWS_MANAGED_KEY.search(value))


def customer_managed_keys(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Redis at rest, SecureStrings and log groups under a key the stack controls, never an
    AWS-managed key that every principal in the account may use through the service."""
    if resource_type == REPLICATION_GROUP and not _customer_key(field(props, "kmsKeyId")):
        return ["kmsKeyId is not set: encrypt Redis at rest with the stack's key, not ElastiCache's default"]
    if resource_type == PARAMETER and field(props, "type") == "SecureString":
        if not _customer_key(field(props, "keyId")):
            return [
                f"keyId is {field(props, 'keyId')!r}: a SecureString under aws/ssm is readable by any "
                "principal with ssm:GetParameter; use the stack's key"
            ]
    if resource_type == LOG_GROUP and not _customer_key(field(props, "kmsKeyId")):
        return ["kmsKeyId is not set: encrypt the log group with the stack's key"]
    return []


# --- network baseline ----------------------------------------------------------------------------


def default_security_group_without_rules(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The VPC's default security group carries no rule: nothing attached to it by default is
    reachable or reaches out."""
    if resource_type != DEFAULT_SECURITY_GROUP:
        return []
    return [
        f"the default security group has {direction} rules: leave {direction} empty"
        for direction in ("ingress", "egress")
        if _count(field(props, direction))
    ]


# --- load balancer -------------------------------------------------------------------------------


def listener_https_only(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A load balancer listener serves HTTPS with a TLS 1.2+ policy and a certificate; plain HTTP
    only redirects to HTTPS."""
    if resource_type not in LISTENERS:
        return []
    protocol = field(props, "protocol")
    if protocol is UNKNOWN:
        return []
    if protocol == "HTTPS":
        problems = []
        policy = field(props, "sslPolicy")
        if policy is not UNKNOWN and not (isinstance(policy, str) and policy.startswith(MODERN_TLS_POLICY_PREFIX)):
            problems.append(f"sslPolicy {policy!r}: use a TLS 1.3/1.2 policy ({MODERN_TLS_POLICY_PREFIX}...)")
        if not _is_set(field(props, "certificateArn")):
            problems.append("certificateArn is missing: an HTTPS listener needs a certificate")
        return problems
    if protocol != "HTTP":
        return []
    actions = [a for a in elements(field(props, "defaultActions")) if isinstance(a, Mapping)]
    redirects = [field(a, "type") == "redirect" and field(a, "redirect", "protocol") == "HTTPS" for a in actions]
    if actions and all(redirects):
        return []
    return [f"a {protocol} listener that does not redirect to HTTPS: serve HTTPS, redirect plain HTTP to it"]


# --- Beat ----------------------------------------------------------------------------------------


def _tagged_beat(resource_type: str, props: Mapping[str, Any]) -> bool:
    if resource_type == INSTANCE:
        return str(field(props, "tags", BEAT_TAG)).lower() == "true"
    if resource_type == AUTOSCALING_GROUP:
        return any(
            field(tag, "key") == BEAT_TAG and str(field(tag, "value")).lower() == "true"
            for tag in elements(field(props, "tags"))
            if isinstance(tag, Mapping)
        )
    return False


def beat_group_of_one(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """An Auto Scaling group tagged celery-beat=true never holds more than one instance."""
    if resource_type != AUTOSCALING_GROUP or not _tagged_beat(resource_type, props):
        return []
    too_big = {
        key: value
        for key in ("maxSize", "desiredCapacity", "minSize")
        if isinstance(value := field(props, key), (int, float)) and value > 1
    }
    if not too_big:
        return []
    sizes = ", ".join(f"{key} {value:g}" for key, value in too_big.items())
    return [f"a Beat group ({BEAT_TAG}=true) with {sizes}: at most one instance (two Beats send every task twice)"]


# --- the stack -----------------------------------------------------------------------------------


def single_beat(resources: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
    """At most one instance or Auto Scaling group tagged celery-beat=true: two Beats send every
    periodic task twice."""
    beats = [name for resource_type, name, props in resources if _tagged_beat(resource_type, props)]
    if len(beats) <= 1:
        return []
    return [
        f"{len(beats)} instances or groups tagged {BEAT_TAG}=true ({', '.join(beats)}): Beat must run on exactly one"
    ]


def _alarmed_metrics(props: Mapping[str, Any]) -> set[tuple[Any, Any]]:
    """(namespace, metric name) of every metric an alarm reads, alone or in metric math."""
    found = {(field(props, "namespace"), field(props, "metricName"))}
    for query in elements(field(props, "metricQueries")):
        if isinstance(query, Mapping):
            found.add((field(query, "metric", "namespace"), field(query, "metric", "metricName")))
    return found


def broker_and_backlog_alarms(resources: Sequence[tuple[str, str, Mapping[str, Any]]], stack: StackId) -> list[str]:
    """The stack pages someone when the broker fills up and when a queue's backlog grows: an alarm
    on each metric, with an alarm action."""
    paged = set()
    for resource_type, _name, props in resources:
        actions = field(props, "alarmActions")
        # Unknown during a preview: the topic is created in the same update.
        if resource_type == METRIC_ALARM and (actions is UNKNOWN or _count(actions)):
            paged |= _alarmed_metrics(props)
    return [
        f"no alarm with an action on {namespace} {metric}: {why}"
        for (namespace, metric), why in (
            (BROKER_MEMORY_METRIC, "a full broker (noeviction) refuses new tasks and nobody is told"),
            ((stack.metrics_namespace, QUEUE_BACKLOG_METRIC_NAME), "tasks pile up in a queue and nobody is told"),
        )
        if (namespace, metric) not in paged
    ]


# Each check is told which stack it judges (some rules hold a resource to its own stack's names).
ResourceCheck = Callable[[str, Mapping[str, Any], StackId], list[str]]
StackCheck = Callable[[Sequence[tuple[str, str, Mapping[str, Any]]], StackId], list[str]]


def _in_any_stack(check: Callable[[str, Mapping[str, Any]], list[str]]) -> ResourceCheck:
    return lambda resource_type, props, _stack: check(resource_type, props)


@dataclass(frozen=True)
class ResourcePolicy:
    name: str
    description: str
    check: ResourceCheck


RESOURCE_POLICIES: Final = (
    ResourcePolicy(
        "elasticache-encrypted-with-auth",
        "ElastiCache Redis has transit (required) and at-rest encryption and an AUTH token.",
        _in_any_stack(elasticache_encrypted_with_auth),
    ),
    ResourcePolicy(
        "no-redis-ingress-from-cidr",
        "No security group ingress to 6379 from a CIDR or prefix list; only from security groups.",
        _in_any_stack(no_redis_ingress_from_cidr),
    ),
    ResourcePolicy("no-ssh-ingress", "No security group ingress to port 22.", _in_any_stack(no_ssh_ingress)),
    ResourcePolicy(
        "no-world-ingress-outside-web",
        "Ingress from 0.0.0.0/0 or ::/0 only to port 80 or 443.",
        _in_any_stack(no_world_ingress_outside_web),
    ),
    ResourcePolicy(
        "instance-hardened",
        "EC2 instances and launch templates: IMDSv2 required, no public IP (nor an Elastic IP), no key pair, "
        "encrypted volumes.",
        _in_any_stack(instance_hardened),
    ),
    ResourcePolicy(
        "listener-https-only",
        "Load balancer listeners: HTTPS with a TLS 1.3/1.2 policy and a certificate; HTTP only redirects to HTTPS.",
        _in_any_stack(listener_https_only),
    ),
    ResourcePolicy(
        "beat-group-of-one",
        f"An Auto Scaling group tagged {BEAT_TAG}=true has at most one instance.",
        _in_any_stack(beat_group_of_one),
    ),
    ResourcePolicy(
        "no-parameter-reads-on-everything",
        "No role policy or attached AWS-managed policy allows ssm:GetParameter* beyond named parameter trees.",
        _in_any_stack(no_parameter_reads_on_everything),
    ),
    ResourcePolicy(
        "instance-grants-scoped",
        "cloudwatch:PutMetricData only with a cloudwatch:namespace condition naming the stack's own namespace; "
        "autoscaling:CompleteLifecycleAction and autoscaling:SetInstanceHealth only on named Auto Scaling groups.",
        instance_grants_scoped,
    ),
    ResourcePolicy(
        "customer-managed-keys",
        "ElastiCache at rest, SecureString parameters and log groups are encrypted with a customer managed key.",
        _in_any_stack(customer_managed_keys),
    ),
    ResourcePolicy(
        "secrets-write-only",
        "The Redis AUTH token and SecureString values reach AWS through write-only inputs, never the state.",
        _in_any_stack(secrets_write_only),
    ),
    ResourcePolicy(
        "default-security-group-without-rules",
        "The VPC's default security group has no ingress and no egress rules.",
        _in_any_stack(default_security_group_without_rules),
    ),
    ResourcePolicy(
        "user-data-verifies-redis-tls",
        "User-data contains no rediss:// URL without ssl_cert_reqs=required.",
        _in_any_stack(user_data_verifies_redis_tls),
    ),
    ResourcePolicy(
        "rds-private",
        "RDS instances: not publicly accessible, in a subnet group the stack names.",
        _in_any_stack(rds_private),
    ),
    ResourcePolicy(
        "rds-encrypted",
        "RDS instances: storage encrypted with a customer managed key; the master password managed by RDS, "
        "its secret under a customer managed key.",
        _in_any_stack(rds_encrypted),
    ),
    ResourcePolicy(
        "rds-tls-forced",
        "RDS instances name a parameter group; PostgreSQL parameter groups set rds.force_ssl=1.",
        _in_any_stack(rds_tls_forced),
    ),
)


@dataclass(frozen=True)
class ProtectionPolicy:
    """A rule that also reads the resource's `protect` option (the engine passes its options)."""

    name: str
    description: str
    check: Callable[[str, Mapping[str, Any], bool], list[str]]


PROTECTION_POLICIES: Final = (
    ProtectionPolicy(
        "rds-deletion-protection-with-protect",
        "A protected RDS instance has deletionProtection and takes a final snapshot.",
        rds_deletion_protection_with_protect,
    ),
)
SINGLE_BEAT_POLICY: Final = "single-celery-beat"
SINGLE_BEAT_DESCRIPTION: Final = f"At most one EC2 instance or Auto Scaling group tagged {BEAT_TAG}=true."


@dataclass(frozen=True)
class StackPolicy:
    name: str
    description: str
    check: StackCheck


STACK_POLICIES: Final = (
    StackPolicy(SINGLE_BEAT_POLICY, SINGLE_BEAT_DESCRIPTION, lambda resources, _stack: single_beat(resources)),
    StackPolicy(
        "broker-and-backlog-alarms",
        "The stack has an alarm with an action on the broker's DatabaseMemoryUsagePercentage and on QueueBacklog.",
        broker_and_backlog_alarms,
    ),
)
