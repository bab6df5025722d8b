"""Fixtures for the ops tool's tests: moto answering boto3's real requests in this process,
instances launched through the EC2 API with the exact tags the Pulumi program renders, and an
SSM client wrapper for what moto does not emulate."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import pytest
import requests
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from moto import mock_aws

from offline_render.program import StackRender
from ops import live_release

REGION = "eu-west-1"
# Any id: moto launches from an unknown image, and listing its built-in images takes seconds.
IMAGE = "ami-0123456789abcdef0"

OPS_TESTS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before xdist's worker names each item's group
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """These tests run on one xdist worker (scripts/test.sh: --dist loadgroup): each process that
    first asks moto's EC2 pays ~1.4 s importing its models (every region's instance-type
    offerings) and builds its own boto3 clients and service models; the other worker runs the
    rest of the lane meanwhile and so never pays them."""
    for item in items:
        if item.path.is_relative_to(OPS_TESTS):
            item.add_marker(pytest.mark.xdist_group("ops-moto"))


@pytest.fixture(scope="session", autouse=True)
def one_service_model_loader() -> Iterator[None]:
    """The tool makes a boto3 session per command, as on an operator's machine; each would parse
    EC2's and SSM's service models (megabytes of JSON) again. One loader serves them all here:
    what AWS's SDK reads from its own data files, not a path of ours."""
    loader = botocore.loaders.create_loader()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("botocore.session.create_loader", lambda *args, **kwargs: loader)
        yield


# The clients built for these tests, kept for the whole run (see one_client_per_service).
BUILT_CLIENTS: dict[tuple[str, str | None], Any] = {}


@pytest.fixture(autouse=True)
def one_client_per_service() -> Iterator[None]:
    """Each command's boto3 session builds its clients again (about 5 ms each, four a command,
    over a hundred commands a run). The SDK's client for a service and region is built once here
    and handed to every session that asks: still the SDK's own client, which moto answers as it
    answers every other (credentials and region come from the same test environment).
    Per test, never per session: in a run of every lane the e2e tests' ops commands that follow
    must build their own clients, for the moto server their environment names."""
    build = boto3.session.Session.client

    def client(
        session: boto3.session.Session, service_name: str, region_name: str | None = None, **options: Any
    ) -> Any:
        if options:
            return build(session, service_name, region_name, **options)
        key = (service_name, region_name or session.region_name)
        if key not in BUILT_CLIENTS:
            BUILT_CLIENTS[key] = build(session, service_name, region_name)
        return BUILT_CLIENTS[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3.session.Session, "client", client)
        yield


@pytest.fixture(scope="package")
def moto_answering() -> Iterator[None]:
    """moto in place of AWS while tests/ops runs. Starting and stopping it for each test cost
    twice a test's reset (it resets every service at both ends and re-registers its URL
    patterns); `aws` resets the state instead. Stopped at the package's end, so no test outside
    tests/ops is ever answered by it."""
    with pytest.MonkeyPatch.context() as patch:
        # Without its catalogue of public AMIs moto's EC2 starts in milliseconds, not a quarter
        # second; the instances launch from an id it does not know anyway. Set for the whole
        # package: moto's stop resets every backend once more, and an EC2 made then with the
        # catalogue (5,184 AMIs, as many snapshots and volumes) lived on in the worker, which
        # each later garbage collection walked.
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        with mock_aws():
            yield


@pytest.fixture()
def aws(moto_answering: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The standard AWS chain answered by moto in this process: boto3 builds, signs and sends
    each request as to AWS, and moto's EC2, SSM and Auto Scaling answer it (no HTTP server in
    between: it cost a few ms per call, over two thousand calls a run). Fresh state per test:
    moto's own reset API drops every service's state, as a new mock_aws would."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    requests.post("http://motoapi.amazonaws.com/moto-api/reset", timeout=10).raise_for_status()
    yield


@pytest.fixture(scope="session")
def program_tags(prod: StackRender) -> list[dict[str, str]]:
    """The tags the Pulumi program puts on prod's instances (2 web, 1 worker, 1 Beat worker)."""
    return [instance.tags for instance in prod.instances]


@functools.cache
def aws_client(service: str) -> Any:
    """One client a service for every test (moto's state is what each test resets): building a
    client costs more than the call it makes. The tool under test builds its own, as it must."""
    return boto3.client(service, region_name=REGION)


def launch(tags: dict[str, str], state: str = "running") -> str:
    ec2 = aws_client("ec2")
    # No InstanceType: the tool never reads it, and moto checks a given one against every
    # instance-type offering of the region on each launch (a seventh of a launch's CPU).
    instance = ec2.run_instances(
        ImageId=IMAGE,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"][0]["InstanceId"]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance])
    elif state == "terminated":
        ec2.terminate_instances(InstanceIds=[instance])
    return instance


@pytest.fixture(scope="session")
def release_parameter(prod: StackRender) -> str:
    """The live release parameter's name, as the program exports it (`releaseParameter`)."""
    (parameter,) = [r.inputs for r in prod.of_type("aws:ssm/parameter:Parameter") if r.inputs["type"] == "String"]
    return str(parameter["name"])


# The artifacts' digests, as `build-release` wrote them beside r1.tar.gz and r2.tar.gz.
DIGESTS = {"r1": "1" * 64, "r2": "2" * 64}


@pytest.fixture(autouse=True)
def built_releases(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """build/releases/ as `build-release` left it on the operator's machine: where deploy takes a
    release's digest from when --sha256 is not given."""
    build_dir = tmp_path_factory.mktemp("releases")
    for release, digest in DIGESTS.items():
        (build_dir / f"{release}.tar.gz.sha256").write_text(f"{digest}  {release}.tar.gz\n")
    monkeypatch.setattr(live_release, "BUILD_DIR", build_dir)
    return build_dir


# moto's EC2 in the region right after the run's first `stack` launched prod's instances through
# the API, and their ids by Name: what every later `stack` starts from again (see there).
LAUNCHED: dict[str, Any] = {}


@pytest.fixture()
def stack(aws: str, program_tags: list[dict[str, str]], release_parameter: str) -> dict[str, str]:
    """prod as the program creates it, in moto: the instances (Name tag -> instance id) and the
    live release parameter, seeded with the release every instance runs (FakeInstances' r1).
    The first test launches the instances through the EC2 API; each later one gets a copy of the
    region's EC2 state as those launches left it (a copy costs ~1.5 ms; four launches into a
    freshly reset EC2 ~35 ms, a test's largest share of moto work outside the tool's own calls)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    aws_client("ssm").put_parameter(Name=release_parameter, Value=f"r1@sha256:{DIGESTS['r1']}", Type="String")
    if not LAUNCHED:
        names = {tags["Name"]: launch(tags) for tags in program_tags}
        LAUNCHED.update(names=names, ec2=copy.deepcopy(ec2_backends[DEFAULT_ACCOUNT_ID][REGION]))
    else:
        ec2_backends[DEFAULT_ACCOUNT_ID][REGION] = copy.deepcopy(LAUNCHED["ec2"])
    return dict(LAUNCHED["names"])


# What a fake instance answers: (status, exit code, stdout, stderr).
Answer = tuple[str, int, str, str]
Responder = Callable[[str, str, str], Answer]  # (instance id, purpose, script) -> answer


@dataclass
class SentCommand:
    instance_id: str
    purpose: str
    document: str
    script: str
    execution_timeout: str


@dataclass
class ScriptedSsm:
    """The SSM client the tool gets. A command is checked as the SDK checks it before sending
    (botocore's validator on SSM's model: a wrong field or type fails as it would against AWS)
    and kept by moto's SSM, asked in place (tests read list_commands back through the API):
    over HTTP-shaped round trips, moto's generic serializer echoing each script back cost more
    than the rest of a rollout test (~1,100 commands a run). Moto does not run commands, so an
    invocation is answered here, as SSM shapes it, with the status and output `responder` gives
    (injected at the boto3 boundary); moto's own answer would only echo the request back.
    Moto has no cancel_command at all, so cancellations are recorded here too.
    through_sdk: commands go through the SDK to moto instead, request and response serialised."""

    real: Any
    responder: Responder
    through_sdk: bool = False
    sent: list[SentCommand] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    scripts_by_command: dict[str, SentCommand] = field(default_factory=dict)

    def send_command(self, **request: Any) -> dict[str, Any]:
        (instance_id,) = request["InstanceIds"]
        response = self.real.send_command(**request) if self.through_sdk else self._kept_in_place(request)
        sent = SentCommand(
            instance_id,
            request["Comment"].removeprefix("ops: "),
            request["DocumentName"],
            "".join(line + "\n" for line in request["Parameters"]["commands"]),
            request["Parameters"]["executionTimeout"][0],
        )
        self.sent.append(sent)
        self.scripts_by_command[response["Command"]["CommandId"]] = sent
        return response

    def _kept_in_place(self, request: dict[str, Any]) -> dict[str, Any]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ssm.models import ssm_backends

        self._validated("SendCommand", request)
        # A copy, as the SDK's serialising makes one: moto adds to the lists it is given.
        request = copy.deepcopy(request)
        # The request's fields as moto's SendCommand handler reads them, with its defaults.
        command = ssm_backends[DEFAULT_ACCOUNT_ID][self.real.meta.region_name].send_command(
            comment=request.get("Comment", ""),
            document_name=request["DocumentName"],
            timeout_seconds=request.get("TimeoutSeconds"),
            instance_ids=request["InstanceIds"],
            max_concurrency=request.get("MaxConcurrency", "50"),
            max_errors=request.get("MaxErrors", "0"),
            notification_config=request.get("NotificationConfig"),
            output_s3_bucket_name=request.get("OutputS3BucketName", ""),
            output_s3_key_prefix=request.get("OutputS3KeyPrefix", ""),
            output_s3_region=request.get("OutputS3Region", ""),
            parameters=request.get("Parameters", {}),
            service_role_arn=request.get("ServiceRoleArn", ""),
            targets=request.get("Targets", []),
        )
        return {"Command": command.response_object()}

    def get_command_invocation(self, CommandId: str, InstanceId: str) -> dict[str, Any]:
        self._validated("GetCommandInvocation", {"CommandId": CommandId, "InstanceId": InstanceId})
        sent = self.scripts_by_command.get(CommandId)
        if sent is None or sent.instance_id != InstanceId:  # what SSM (and moto) answer then
            error = {"Code": "InvocationDoesNotExist", "Message": f"no invocation of {CommandId} on {InstanceId}"}
            raise ClientError({"Error": error}, "GetCommandInvocation")
        status, code, stdout, stderr = self.responder(InstanceId, sent.purpose, sent.script)
        return {
            "CommandId": CommandId,
            "InstanceId": InstanceId,
            "Comment": f"ops: {sent.purpose}",
            "DocumentName": sent.document,
            "Status": status,
            "StatusDetails": status,
            "ResponseCode": code,
            "StandardOutputContent": stdout,
            "StandardErrorContent": stderr,
        }

    def _validated(self, operation: str, request: dict[str, Any]) -> None:
        """What the SDK checks before it sends: ParamValidationError names a wrong field or type."""
        validate_parameters(request, self.real.meta.service_model.operation_model(operation).input_shape)

    def cancel_command(self, CommandId: str, InstanceIds: list[str]) -> dict[str, Any]:
        self.cancelled.append(CommandId)
        return {}


@pytest.fixture()
def ssm_client(aws: str) -> Any:
    return aws_client("ssm")
