"""VM boot benchmark: per role, the time from qemu's start to every unit of the role being active
on the default path (app.source s3: the release downloaded and installed at boot), side by
side with a trivial cloud-init boot (one oneshot unit enabled by runcmd) of the same image in the
same run, and the ratio. Same harness as the VM tests.

    .venv/bin/python bench/vm_boot.py [--cold] [--quick]

Each role boots as Auto Scaling launches an instance into a running stack (a scale-out, an
instance refresh, a replacement): the release command is recorded done in the broker, as the
stack's first instances leave it (the guest's vm-test-running-stack unit), so the boot finds the
record and skips the command. Web boots once more as a stack's first instance, which runs the
command (here `python manage.py check`; a team's own is usually `migrate`). Each boot's journal
must say which of the two it was, or the bench fails.

The trivial boot runs first and last, and the ratio uses their mean, so load that drifts during
the run weighs on both sides. Where the time goes: the guest's `systemd-analyze blame`,
`critical-chain` and `cloud-init analyze blame`, as the probe prints them, and per unit of the
role its start, its time to active and its CPU (systemd's accounting, from the probe's `show`
reports). --cold also builds the image into an empty cache first (Debian's .debs reused from the
machine's cache). Run it alone: it takes both cores for about 12 minutes. --quick boots the
trivial user-data once and the web role into a running stack only (the VM lane runs it so:
tests/vm/test_bench.py).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from scripts.vm import boot as harness
from scripts.vm import image as vm_image
from userdata.layout import ENABLE_UNITS

TARGET_RATIO = 2.0  # issue 25.1
TRIVIAL_UNIT = "trivial.service"
FIRST_BOOT = "web-first"  # web as a stack's first instance
# What app-release-command prints (userdata/files/app-release-command) when it finds the record /
# when it runs the command.
ALREADY_RAN, RUNNING = ": already ran (", ": running "


def trivial_user_data() -> str:
    """The least a cloud-init boot can do that still ends in an active unit."""
    unit = (
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    config = {
        "write_files": [{"path": f"/etc/systemd/system/{TRIVIAL_UNIT}", "content": unit, "permissions": "0644"}],
        # Started as the program starts its units, which is how the guest's probe finds them.
        "runcmd": [[*ENABLE_UNITS, TRIVIAL_UNIT]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


def cold_build_seconds(store: vm_image.ReleaseStore) -> float:
    with tempfile.TemporaryDirectory(prefix="vm-bench-cache-") as scratch:
        cache = Path(scratch)
        (vm_image.DEFAULT_CACHE / "debs").mkdir(parents=True, exist_ok=True)
        (cache / "debs").symlink_to(vm_image.DEFAULT_CACHE / "debs")
        built = vm_image.ensure_image(store, cache)
        assert built.built_seconds is not None
        return built.built_seconds


def timed_boot(
    image: vm_image.Image, name: str, role: str, user_data: str, scratch: Path, data: dict[str, Any]
) -> harness.Boot | None:
    result = harness.boot(image, role, user_data, scratch / name, data=data)
    ready = next((r for r in result.reports if r.key == "ready"), None)
    if ready is None or not ready.value.get("all_active"):
        print(f"{name}: units did not all become active; console tail:\n{result.console[-2000:]}")
        return None
    silent = result.silent_attempt
    print(
        f"{name}: qemu start -> all units active {ready.seconds:.1f} s "
        f"(guest uptime {ready.value['uptime']:.1f} s); qemu start -> exit {result.seconds:.1f} s"
        + (f" (a second qemu: the first never started the probe in {silent.describe()})" if silent else "")
    )
    return result


def where_the_time_goes(result: harness.Boot) -> None:
    timing = result.first("boot-timing")
    for title, key, lines in (
        ("systemd-analyze blame", "blame", 8),
        ("systemd-analyze critical-chain", "chain", 14),
        ("cloud-init analyze blame", "cloud_init", 10),
        ("the release install's, the log agent's and the release command's journal (uptime)", "release", 40),
    ):
        print(f"  {title}:")
        for line in timing[key][:lines]:
            print(f"    {line.strip()}")


def seconds(props: dict[str, str], key: str, divisor: float) -> float | None:
    """A numeric property of `systemctl show` in seconds; None where systemd has no value
    ("[not set]", or a timestamp of 0: the event did not happen)."""
    value = props.get(key, "")
    return int(value) / divisor if value.isdigit() and int(value) else None


def unit_costs(result: harness.Boot) -> None:
    """Each of the role's units as the probe's `show` reports give it, taken once all were
    active: when it left inactive (guest uptime), how long it took to become active, and the CPU
    its cgroup used so far (for the oneshots, all of it)."""
    print("  the program's units (start at uptime, start -> active, CPU so far):")
    for report in result.all("show"):
        props = report["properties"]
        start = seconds(props, "InactiveExitTimestampMonotonic", 1e6)
        active = seconds(props, "ActiveEnterTimestampMonotonic", 1e6)
        cpu = seconds(props, "CPUUsageNSec", 1e9)
        took = f"{active - start:.1f} s" if start and active else "-"
        used = f"{cpu:.1f} s of CPU" if cpu is not None else "CPU not accounted"
        print(f"    {report['unit']}: {start or 0:.1f} s, {took}, {used}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/vm_boot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="also time a cold image build into an empty cache")
    parser.add_argument("--quick", action="store_true", help="smallest settings: one trivial boot, then web")
    args = parser.parse_args(argv)

    accel = "KVM" if harness.has_hardware_virtualisation() else "TCG"
    print(
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"accelerator {accel}, guest 2 vCPU / 1 GiB, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    stack = harness.vm_stack()
    if args.cold:
        print(f"image build, cold: {cold_build_seconds(stack.store):.1f} s")
    started = time.monotonic()
    image = vm_image.ensure_image(stack.store)
    how = "cached (hash lookup)" if image.built_seconds is None else "built (not in the cache)"
    print(f"image {how}: {time.monotonic() - started:.2f} s")

    boots: dict[str, harness.Boot] = {}
    trivial: list[float] = []
    with tempfile.TemporaryDirectory(prefix="vm-bench-") as scratch:
        roles = ("web",) if args.quick else harness.ROLES
        plan = [("trivial-1", "web", trivial_user_data())]
        plan += [(role, role, stack.roles[role][0]) for role in roles]
        plan += (
            []
            if args.quick
            else [(FIRST_BOOT, "web", stack.roles["web"][0]), ("trivial-2", "web", trivial_user_data())]
        )
        for name, role, user_data in plan:
            # The live release as `pulumi up` seeds it: the configured one. `timing`: the probe
            # reports where a role's boot time went (systemd-analyze, cloud-init analyze), which
            # only the roles' boots print (about 11 s of a trivial boot under TCG).
            data = {
                "parameters": harness.seeded_parameters(stack, stack.store.release),
                "timing": not name.startswith("trivial"),
                "running_stack": name in harness.ROLES,
            }
            result = timed_boot(image, name, role, user_data, Path(scratch), data)
            if result is None:
                return 1
            if name.startswith("trivial"):
                trivial.append(result.seconds_to("ready"))
                continue
            journal = "\n".join(result.first("boot-timing")["release"])
            expected = ALREADY_RAN if name in harness.ROLES else RUNNING
            if expected not in journal:
                print(f"{name}: the release command's journal lacks {expected!r}; not the boot meant:\n{journal}")
                return 1
            boots[name] = result
    baseline = statistics.mean(trivial)
    print(f"\ntrivial cloud-init boot (mean of {len(trivial)}): {baseline:.1f} s")
    for role, result in boots.items():
        ratio = result.seconds_to("ready") / baseline
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        how = " (web, a stack's first instance)" if role == FIRST_BOOT else ", into a running stack"
        print(
            f"{role}{how}: {result.seconds_to('ready'):.1f} s = {ratio:.2f}x the trivial boot "
            f"({verdict} <= {TARGET_RATIO}x)"
        )
    for role, result in boots.items():
        print(f"\nwhere the time goes, {role}:")
        where_the_time_goes(result)
        unit_costs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
