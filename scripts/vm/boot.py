"""Boots the VM test image with the user-data the program renders for one role and collects what
the guest's probe reports on the serial console.

No network device, except for a boot that reaches a service on the host (the example project's
PostgreSQL): qemu's user network, restricted, whose only way out is the address forwarded to
that service. A qcow2 overlay per boot keeps the cached disk clean; the NoCloud seed carries the
program's user-data as is; a small raw drive (serial `vmtest`) carries the test's own data for
this boot (the scenario, the live release the Parameter Store stand-in answers, the ops scripts a
scenario runs). Several boots may run at once (tests/vm/conftest.py runs two).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from config import AppSettings
from offline_render.program import StackRender, render_stack
from scripts.vm.image import EXAMPLE_RELEASE, REDIS_HOST, STACK, Image, ReleaseStore
from userdata import layout
from userdata.render import with_agent_keyring, written_files

PARAMETER_TYPE = "aws:ssm/parameter:Parameter"

# The roles the tests boot: name -> how to pick that instance from the rendered stack.
ROLES = ("web", "worker-beat", "worker")
# The app's own settings (app.environment, app.secretParameters): the sample app reads one of
# each (GET /app-settings); the guest's Parameter Store stand-in holds the secret.
SAMPLE_GREETING = "hello from app.environment in the VM"
SAMPLE_API_KEY_PARAMETER = "/sample-app/vm/api-key"
SAMPLE_API_KEY = "vm-api-key-" + secrets.token_hex(8)
# Config overrides for the VM boots; everything else (app.source s3, the release, the bucket, the
# SSM agent install) is the stack file as deployed. The short time limits make the broker's
# visibility timeout (and so the redelivery after kill -9) fit a test; one process per queue
# keeps TCG fast.
VM_OVERRIDES: dict[str, Any] = {
    "app.environment": {"SAMPLE_GREETING": SAMPLE_GREETING},
    "app.secretParameters": {"SAMPLE_API_KEY": SAMPLE_API_KEY_PARAMETER},
    "worker.stopMarginSeconds": 40,
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
# The baked-AMI path: the image's ami.img carries the configured release (any AMI id will do: the
# VM boots the disk it is given).
AMI_OVERRIDES: dict[str, Any] = {**VM_OVERRIDES, "app.source": "ami", "instances.amiId": "ami-0123456789abcdef0"}
# examples/bookshelf on the default s3 path: its module and settings, the release the image's S3
# stand-in holds, the default release command (migrate; the prod stack file says `check` for the
# sample project, which has no database), and an existing PostgreSQL whose DATABASE_URL comes
# from Parameter Store through app.secretParameters. The database is the host's (tests/vm
# conftest), reached at DATABASE_GUEST_ADDRESS:5432 from the guest.
EXAMPLE_DATABASE_URL_PARAMETER = "/bookshelf/vm/database-url"
DATABASE_GUEST_ADDRESS, DATABASE_PORT = "10.0.2.100", 5432
# The card's address in qemu's user network (10.0.2.0/24), and where the guest finds the
# database's CA (the DATABASE_URL's sslrootcert; scripts/vm/guest/host_link.py writes it).
GUEST_ADDRESS = "10.0.2.15/24"
DATABASE_CA_IN_GUEST = "/usr/local/share/vm-test/database-ca.pem"
DEFAULT_RELEASE_COMMAND = next(
    field.default for field in msgspec.structs.fields(AppSettings) if field.name == "release_command"
)
EXAMPLE_OVERRIDES: dict[str, Any] = {
    **{key: value for key, value in VM_OVERRIDES.items() if not key.startswith("app.")},
    "app.module": "bookshelf",
    "app.settingsModule": "bookshelf.settings",
    "app.release": EXAMPLE_RELEASE,
    "app.releaseCommand": DEFAULT_RELEASE_COMMAND,
    "app.secretParameters": {"DATABASE_URL": EXAMPLE_DATABASE_URL_PARAMETER},
    "database": {"mode": "existing", "cidrs": [f"{DATABASE_GUEST_ADDRESS}/32"], "port": DATABASE_PORT},
}
RELAY = Path(__file__).resolve().parent / "relay.py"
MARK = re.compile(r"VMTEST (\S+) (.*)$")
# qemu start to poweroff. Under TCG on a loaded 2-core host a boot that builds the venv took
# 8.5 min to ready, and the deploy scenario builds a second one.
BOOT_TIMEOUT_SECONDS = 1800
# The probe's first line ("started") comes once the guest is past basic.target: about 10 s under
# TCG, a minute at load 4. A guest silent for longer never got there; once in a CI run qemu spun
# 30 min on an empty console, 196 KB written to its disk. That boot is started again, once, and
# the Boot keeps how long the silent attempt ran; a second silent start runs to the timeout.
STARTUP_TIMEOUT_SECONDS = 600
SECTOR = 512
# Set by the session that runs boots in threads when it ends early: every boot kills its qemu.
STOP = threading.Event()


@dataclass(frozen=True)
class HostService:
    """A service on the host's loopback that the guest reaches at guest_address:guest_port."""

    guest_address: str
    guest_port: int
    host: str
    port: int


@dataclass
class Report:
    """One marked console line: what the probe found, and when the host saw it."""

    key: str
    value: Any
    seconds: float  # since qemu was started


@dataclass(frozen=True)
class SilentAttempt:
    """A qemu stopped because its guest's probe had not started: what it had done by then, to
    tell a spinning guest (its CPU all the time, little written) from one left waiting."""

    seconds: float
    cpu_seconds: float  # qemu's, user and system
    disk_bytes: int  # its overlay's size: what the guest wrote, plus qcow2's own tables
    console_bytes: int

    def describe(self) -> str:
        return (
            f"{self.seconds:.0f} s (qemu used {self.cpu_seconds:.0f} s of CPU, its overlay "
            f"{self.disk_bytes // 1024} KiB, its console {self.console_bytes} bytes)"
        )


@dataclass
class Boot:
    role: str
    user_data: str
    console: str
    instance_id: str
    autoscaling_group: str
    reports: list[Report] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float = 0.0  # qemu start to qemu exit
    silent_attempt: SilentAttempt | None = None  # a first qemu that never started the probe

    def first(self, key: str) -> Any:
        for report in self.reports:
            if report.key == key:
                return report.value
        raise KeyError(f"the probe reported no '{key}' line; console tail:\n{self.console[-4000:]}")

    def all(self, key: str) -> list[Any]:
        return [report.value for report in self.reports if report.key == key]

    def seconds_to(self, key: str) -> float:
        return next(r.seconds for r in self.reports if r.key == key)


def render(overrides: dict[str, Any]) -> StackRender:
    return render_stack(STACK, overrides=overrides, redis_endpoint=REDIS_HOST)


def role_user_data(rendered: StackRender) -> dict[str, tuple[str, dict[str, str]]]:
    """role -> (user-data, tags) as the program renders them for this image."""
    picked: dict[str, tuple[str, dict[str, str]]] = {}
    for instance in rendered.instances:
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


def release_env(user_data: str) -> dict[str, str]:
    """The release.env the program writes on the instance, as KEY -> value."""
    text = next(f.content for f in written_files(user_data) if f.path == layout.RELEASE_ENV)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class VmStack:
    """The prod stack as the VM boots it: each role's user-data, and what its release.env says."""

    roles: dict[str, tuple[str, dict[str, str]]]
    store: ReleaseStore
    # The live release's Parameter Store name (release.env's RELEASE_PARAMETER).
    release_parameter: str


def vm_stack() -> VmStack:
    rendered = render(VM_OVERRIDES)
    roles = role_user_data(rendered)
    env = release_env(roles["web"][0])
    parameter = env["RELEASE_PARAMETER"]
    # The release `pulumi up` seeds the parameter with (the program's own resource input).
    release = next(r.inputs["insecureValue"] for r in rendered.of_type(PARAMETER_TYPE) if r.inputs["name"] == parameter)
    store = ReleaseStore(env["AWS_REGION"], env["ARTIFACT_BUCKET"], env["ARTIFACT_PREFIX"], release)
    return VmStack(roles, store, parameter)


def seeded_parameters(stack: VmStack, live_release: str) -> dict[str, dict[str, str]]:
    """What a boot's Parameter Store stand-in answers beyond the image's secrets: the live release
    (app-release ensure reads it; without it the boot fails) and the app's own secret."""
    return {
        stack.release_parameter: {"type": "String", "value": live_release},
        SAMPLE_API_KEY_PARAMETER: {"type": "SecureString", "value": SAMPLE_API_KEY},
    }


def has_hardware_virtualisation() -> bool:
    # A paravirtual /dev/kvm without vmx/svm cannot boot a stock kernel (see docs/vm.md).
    flags = Path("/proc/cpuinfo").read_text()
    return bool(re.search(r"\b(vmx|svm)\b", flags)) and Path("/dev/kvm").exists()


def accelerator() -> list[str]:
    if has_hardware_virtualisation():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def make_seed(workdir: Path, user_data: str, hostname: str, instance_id: str) -> Path:
    (workdir / "user-data").write_text(user_data)
    (workdir / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
    seed = workdir / "seed.iso"
    subprocess.run(
        ["cloud-localds", str(seed), str(workdir / "user-data"), str(workdir / "meta-data")],
        check=True,
        capture_output=True,
    )
    return seed


def make_data_drive(workdir: Path, data: dict[str, Any]) -> Path:
    """The boot's test data as one JSON document, space-padded to whole sectors."""
    raw = json.dumps(data).encode()
    drive = workdir / "vmtest.raw"
    drive.write_bytes(raw + b" " * (-len(raw) % SECTOR))
    return drive


def virtio_disk(name: str, drive: str) -> list[str]:
    return ["-drive", f"{drive},if=none,id={name}", "-device", f"virtio-blk-pci,drive={name},serial={name}"]


def network(services: list[HostService]) -> list[str]:
    """No card at all, or qemu's user network restricted to the forwarded services: each guest
    connection to one runs scripts/vm/relay.py to the host's address (nothing else gets out)."""
    if not services:
        return ["-nic", "none"]
    forwards = "".join(
        f",guestfwd=tcp:{s.guest_address}:{s.guest_port}-cmd:/usr/bin/python3 {RELAY} {s.host} {s.port}"
        for s in services
    )
    return ["-netdev", f"user,id=host,restrict=on{forwards}", "-device", "virtio-net-pci,netdev=host"]


def qemu_command(
    image: Image, overlay: Path, seed: Path, data: Path, console: Path, services: list[HostService] | None = None
) -> list[str]:
    cmdline = "root=/dev/vda rw console=ttyS0 ds=nocloud quiet loglevel=3 systemd.show_status=0"
    return [
        "qemu-system-x86_64",
        "-nodefaults",
        *network(services or []),
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
        # Explicit devices, in this order: vda is the root disk, vdb the seed, vdc the test data
        # (qemu creates -device entries before if=virtio drives, so mixing them reorders).
        *virtio_disk("root", f"file={overlay},format=qcow2"),
        *virtio_disk("seed", f"file={seed},format=raw,readonly=on"),
        *virtio_disk("vmtest", f"file={data},format=raw,readonly=on"),
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
    image: Image,
    role: str,
    user_data: str,
    workdir: Path,
    *,
    data: dict[str, Any] | None = None,
    disk: Path | None = None,
    services: list[HostService] | None = None,
    timeout: float = BOOT_TIMEOUT_SECONDS,
) -> Boot:
    """Boots one VM to its poweroff; every marked line is timestamped as the host sees it.
    disk: the image's base.img (default: the stock OS) or ami.img (the release baked in).
    services: the host's services the guest reaches (its data's `host_link` configures the card).
    The user-data is the program's, with one change: the agent packages' keyring is the image's
    throwaway key (the stand-in packages cannot carry AWS's signature)."""
    if any(f.path == layout.AGENT_KEYRING for f in written_files(user_data)):
        user_data = with_agent_keyring(user_data, image.agent_keyring)
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    # A fresh instance id per boot: cloud-init treats every boot as a first boot. The guest's
    # IMDS and Auto Scaling stand-ins answer with it, and with the group the instance is in.
    instance_id = f"i-{uuid.uuid4().hex[:17]}"
    seed = make_seed(workdir, user_data, f"{STACK}-{role}", instance_id)
    group = f"{STACK}-{role}-vmtest"
    drive = make_data_drive(workdir, {**(data or {}), "instance_id": instance_id, "autoscaling_group": group})
    console = workdir / "console.log"
    result = Boot(role, user_data, "", instance_id=instance_id, autoscaling_group=group)
    qemu = (image, disk, overlay, seed, drive, console, services)
    process, seconds, silent = run_qemu(*qemu, result, timeout, startup_timeout=STARTUP_TIMEOUT_SECONDS)
    if silent:
        result.silent_attempt = silent
        process, seconds, _ = run_qemu(*qemu, result, timeout)
    result.exit_code = process.returncode
    result.seconds = seconds
    qemu_output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    result.console = console.read_text(errors="replace") + (f"\n[qemu] {qemu_output}" if qemu_output else "")
    return result


def run_qemu(
    image: Image,
    disk: Path | None,
    overlay: Path,
    seed: Path,
    drive: Path,
    console: Path,
    services: list[HostService] | None,
    result: Boot,
    timeout: float,
    startup_timeout: float | None = None,
) -> tuple[subprocess.Popen[bytes], float, SilentAttempt | None]:
    """One qemu on a fresh overlay, its marked lines added to `result` as they appear, until it
    powers off or `timeout`. Returns it (exited), its seconds, and, when it was stopped because
    the probe had not started within `startup_timeout`, what it had done by then."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk or image.base), "-F", "raw", str(overlay)],
        check=True,
    )
    console.write_bytes(b"")
    started = time.monotonic()
    process = subprocess.Popen(
        qemu_command(image, overlay, seed, drive, console, services), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    silent = None
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
            if STOP.is_set():
                raise RuntimeError(f"boot {result.role} stopped: the session ended")
            if startup_timeout is not None and now > startup_timeout and not result.reports:
                silent = SilentAttempt(round(now, 2), cpu_seconds(process.pid), overlay.stat().st_size, len(data))
                break
            if now > timeout:
                result.reports.append(Report("harness-timeout", timeout, now))
                break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        overlay.unlink(missing_ok=True)
    if silent and process.stdout:
        process.stdout.close()  # what a stuck qemu printed is of no use; the next attempt's is
    return process, round(time.monotonic() - started, 2), silent


def cpu_seconds(pid: int) -> float:
    """A running process's CPU so far, user and system (/proc/PID/stat's utime and stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
