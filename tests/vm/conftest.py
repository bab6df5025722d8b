"""The VM suite's fixtures: the cached image, the program's user-data per role, the live-release
parameter store, and one boot per scenario for the whole session (each boot takes a minute or two
under TCG; every test of a boot reads the same console).

The boots, all from the prod stack as the program renders it:
  web, worker-beat, worker  the default path (app.source: s3): the stock OS, the release
                            downloaded and its venv built at boot; `web` then deploys the next
                            release with the ops tool's scripts, `worker` kills and stops workers
  web-ami                   the baked-AMI path (app.source: ami): the release is on the disk
  web-replaced              a fresh web instance booted after that deploy was recorded as the
                            live release: it must come up on the deployed release
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ops.scripts import install_release_script, switch_release_script
from scripts.vm import boot as harness
from scripts.vm import image as vm_image

REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "cloud-localds", "debootstrap", "mkfs.ext4", "dpkg-deb")
ROLE_BOOTS = ("web", "worker-beat", "worker")
ALL_BOOTS = (*ROLE_BOOTS, "web-ami", "web-replaced")


@pytest.fixture(scope="session")
def stack() -> harness.VmStack:
    return harness.vm_stack()


@pytest.fixture(scope="session")
def image(stack: harness.VmStack) -> vm_image.Image:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    assert not missing, f"VM tools missing: {missing}; run scripts/setup.d/40-vm.sh"
    return vm_image.ensure_image(stack.store)


@pytest.fixture(scope="session")
def rendered(stack: harness.VmStack) -> dict[str, tuple[str, dict[str, str]]]:
    return stack.roles


@pytest.fixture(scope="session")
def parameter_store(stack: harness.VmStack) -> Iterator[Any]:
    """AWS's Parameter Store for the stack (moto on the host's loopback) holding the live release
    as `pulumi up` creates it: the configured app.release. Each boot's guest stand-in is seeded
    with what it holds at boot time."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    ssm = boto3.client(
        "ssm",
        region_name=stack.store.region,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm.put_parameter(Name=stack.release_parameter, Value=stack.store.release, Type="String")
    yield ssm
    server.stop()


@pytest.fixture(scope="session")
def booted(
    image: vm_image.Image, stack: harness.VmStack, parameter_store: Any, tmp_path_factory
) -> Callable[[str], harness.Boot]:  # type: ignore[no-untyped-def]
    boots: dict[str, harness.Boot] = {}

    def start(name: str, role: str, user_data: str, disk: Path, **data: Any) -> harness.Boot:
        live = parameter_store.get_parameter(Name=stack.release_parameter)["Parameter"]["Value"]
        data["parameters"] = harness.seeded_parameters(stack, live)
        workdir = tmp_path_factory.mktemp(f"vm-{name}")
        return harness.boot(image, role, user_data, workdir, data=data, disk=disk)

    def get(name: str) -> harness.Boot:
        if name in boots:
            return boots[name]
        if name == "web":
            deploy = {
                "release": vm_image.NEXT_RELEASE,
                "install": install_release_script(vm_image.NEXT_RELEASE, image.artifact_sha256(vm_image.NEXT_RELEASE)),
                "switch": switch_release_script("web", vm_image.NEXT_RELEASE),
            }
            boots[name] = start(name, "web", stack.roles["web"][0], image.base, scenario="deploy", deploy=deploy)
        elif name == "worker":
            boots[name] = start(name, "worker", stack.roles["worker"][0], image.base, scenario="restart")
        elif name == "worker-beat":
            boots[name] = start(name, "worker-beat", stack.roles["worker-beat"][0], image.base)
        elif name == "web-ami":
            user_data = harness.role_user_data(harness.render(harness.AMI_OVERRIDES))["web"][0]
            boots[name] = start(name, "web", user_data, image.ami)
        elif name == "web-replaced":
            boots[name] = start(name, "web", stack.roles["web"][0], image.base)
        else:
            raise KeyError(f"no VM boot named {name!r}; boots: {', '.join(ALL_BOOTS)}")
        return boots[name]

    return get


@pytest.fixture(scope="session")
def replaced_web(
    booted: Callable[[str], harness.Boot], stack: harness.VmStack, parameter_store: Any, image: vm_image.Image
) -> harness.Boot:
    """After the deploy on `web` succeeded, the ops tool records the live release; then a fresh
    web instance boots (same user-data, app.release still the old one)."""
    from ops.live_release import PinnedRelease, record

    deploy = booted("web").first("deploy")
    assert deploy["switch"] and deploy["switch"]["rc"] == 0, deploy
    release = deploy["active_after"]
    record(parameter_store, stack.release_parameter, PinnedRelease(release, image.artifact_sha256(release)))
    return booted("web-replaced")


@pytest.fixture(scope="session")
def any_boot(booted: Callable[[str], harness.Boot], request: pytest.FixtureRequest) -> Callable[[str], harness.Boot]:
    """Any boot by name; web-replaced only through replaced_web (it needs the deploy recorded)."""

    def get(name: str) -> harness.Boot:
        if name == "web-replaced":
            boot: harness.Boot = request.getfixturevalue("replaced_web")
            return boot
        return booted(name)

    return get
