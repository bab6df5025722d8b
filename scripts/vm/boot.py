"""Boots the VM test image with the user-data the program renders for one role and collects what
the guest's probe reports on the serial console.

One VM at a time (TCG with 2 vCPUs takes both host cores); no network device; a qcow2 overlay per
boot keeps the cached base image clean; the NoCloud seed carries the program's user-data as is.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.vm.image import IMAGE_RELEASE, REDIS_HOST, STACK, Image

# The roles the tests boot: name -> how to pick that instance from the rendered stack.
ROLES = ("web", "worker-beat", "worker")
# Config overrides for the VM boots; everything else is the stack file as deployed. The release is
# the one baked into the image; the short time limits make the broker's visibility timeout (and so
# the redelivery after kill -9) fit a test; one process per queue keeps TCG fast.
VM_OVERRIDES: dict[str, Any] = {
    "app.release": IMAGE_RELEASE,
    # The guest has no network, so the SSM agent download cannot run; the image stands in for
    # an AMI that carries the agent (the install step is tested by the render tests).
    "instances.ssmAgent": "preinstalled",
    "worker.stopMarginSeconds": 10,
    "worker.visibilityTimeout": 25,
    "worker.queues": [
        {"name": "default", "concurrency": 2, "softTimeLimit": 15, "hardTimeLimit": 20},
        {
            "name": "long",
            "concurrency": 1,
            "softTimeLimit": 15,
            "hardTimeLimit": 20,
            "routes": ["myapp.tasks.generate_report"],
        },
    ],
}
MARK = re.compile(r"VMTEST (\S+) (.*)$")
BOOT_TIMEOUT_SECONDS = 420


@dataclass
class Report:
    """One marked console line: what the probe found, and when the host saw it."""

    key: str
    value: Any
    seconds: float  # since qemu was started


@dataclass
class Boot:
    role: str
    user_data: str
    console: str
    reports: list[Report] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float = 0.0  # qemu start to qemu exit

    def first(self, key: str) -> Any:
        for report in self.reports:
            if report.key == key:
                return report.value
        raise KeyError(f"the probe reported no '{key}' line; console tail:\n{self.console[-4000:]}")

    def all(self, key: str) -> list[Any]:
        return [report.value for report in self.reports if report.key == key]

    def seconds_to(self, key: str) -> float:
        return next(r.seconds for r in self.reports if r.key == key)


def role_user_data() -> dict[str, tuple[str, dict[str, str]]]:
    """role -> (user-data, tags) as the program renders them for this image."""
    from offline_render.program import render_stack
    from userdata import layout

    render = render_stack(STACK, overrides=VM_OVERRIDES, redis_endpoint=REDIS_HOST)
    picked: dict[str, tuple[str, dict[str, str]]] = {}
    for instance in render.instances:
        if instance.role == layout.WEB_ROLE:
            role = "web"
        elif instance.tags.get(layout.BEAT_TAG) == layout.BEAT_TAG_VALUE:
            role = "worker-beat"
        else:
            role = "worker"
        picked.setdefault(role, (instance.user_data, instance.tags))
    missing = [role for role in ROLES if role not in picked]
    if missing:
        raise RuntimeError(f"the rendered stack has no instance for role(s) {missing}")
    return picked


def has_hardware_virtualisation() -> bool:
    # A paravirtual /dev/kvm without vmx/svm cannot boot a stock kernel (see docs/vm.md).
    flags = Path("/proc/cpuinfo").read_text()
    return bool(re.search(r"\b(vmx|svm)\b", flags)) and Path("/dev/kvm").exists()


def accelerator() -> list[str]:
    if has_hardware_virtualisation():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def make_seed(workdir: Path, user_data: str, hostname: str) -> Path:
    (workdir / "user-data").write_text(user_data)
    # A fresh instance-id per boot: cloud-init treats every boot as a first boot.
    (workdir / "meta-data").write_text(f"instance-id: i-{uuid.uuid4().hex[:17]}\nlocal-hostname: {hostname}\n")
    seed = workdir / "seed.iso"
    subprocess.run(
        ["cloud-localds", str(seed), str(workdir / "user-data"), str(workdir / "meta-data")],
        check=True,
        capture_output=True,
    )
    return seed


def qemu_command(image: Image, overlay: Path, seed: Path, console: Path, scenario: str) -> list[str]:
    cmdline = (
        "root=/dev/vda rw console=ttyS0 ds=nocloud quiet loglevel=3 systemd.show_status=0 "
        f"vmtest.scenario={scenario or 'none'}"
    )
    return [
        "qemu-system-x86_64",
        "-nodefaults",
        "-nic",
        "none",
        "-display",
        "none",
        "-no-reboot",
        *accelerator(),
        "-smp",
        "2",
        "-m",
        "1024",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        cmdline,
        "-drive",
        f"file={overlay},if=virtio,format=qcow2",
        "-drive",
        f"file={seed},if=virtio,format=raw,readonly=on",
        "-serial",
        f"file:{console}",
    ]


def parse_line(line: str, seconds: float) -> Report | None:
    found = MARK.search(line)
    if not found:
        return None
    try:
        value = json.loads(found.group(2))
    except json.JSONDecodeError:
        value = {"unparsed": found.group(2)}
    return Report(found.group(1), value, round(seconds, 2))


def boot(
    image: Image, role: str, user_data: str, workdir: Path, scenario: str = "", timeout: float = BOOT_TIMEOUT_SECONDS
) -> Boot:
    """Boots one VM to its poweroff; every marked line is timestamped as the host sees it."""
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.base), "-F", "raw", str(overlay)], check=True
    )
    seed = make_seed(workdir, user_data, f"{STACK}-{role}")
    console = workdir / "console.log"
    console.write_bytes(b"")
    result = Boot(role, user_data, "")
    started = time.monotonic()
    process = subprocess.Popen(
        qemu_command(image, overlay, seed, console, scenario), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    seen = 0
    try:
        while True:
            finished = process.poll() is not None
            data = console.read_bytes()
            complete = data[: data.rfind(b"\n") + 1] if not finished else data
            now = time.monotonic() - started
            for line in complete[seen:].decode(errors="replace").splitlines():
                report = parse_line(line, now)
                if report:
                    result.reports.append(report)
            seen = len(complete)
            if finished:
                break
            if now > timeout:
                process.kill()
                process.wait()
                result.reports.append(Report("harness-timeout", timeout, now))
                break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        overlay.unlink(missing_ok=True)
    result.exit_code = process.returncode
    result.seconds = round(time.monotonic() - started, 2)
    qemu_output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    result.console = console.read_text(errors="replace") + (f"\n[qemu] {qemu_output}" if qemu_output else "")
    return result
