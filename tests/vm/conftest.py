"""The VM suite's fixtures: the cached image, the program's user-data per role, and one boot per
role for the whole session (each boot takes about a minute under TCG; every test of a role reads
the same console)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from scripts.vm import boot as harness
from scripts.vm import image as vm_image

# The worker without Beat also runs the kill -9 and warm-shutdown scenario (one boot per role).
SCENARIO = {"worker": "restart"}
REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "cloud-localds", "debootstrap", "mkfs.ext4")


@pytest.fixture(scope="session")
def image() -> vm_image.Image:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    assert not missing, f"VM tools missing: {missing}; run scripts/setup.d/40-vm.sh"
    return vm_image.ensure_image()


@pytest.fixture(scope="session")
def rendered() -> dict[str, tuple[str, dict[str, str]]]:
    return harness.role_user_data()


@pytest.fixture(scope="session")
def booted(image: vm_image.Image, rendered, tmp_path_factory) -> Callable[[str], harness.Boot]:  # type: ignore[no-untyped-def]
    boots: dict[str, harness.Boot] = {}

    def get(role: str) -> harness.Boot:
        if role not in boots:
            user_data = rendered[role][0]
            workdir = tmp_path_factory.mktemp(f"vm-{role}")
            boots[role] = harness.boot(image, role, user_data, workdir, SCENARIO.get(role, ""))
        return boots[role]

    return get
