"""VM boot benchmark: image build time (cold and cached) and, per role, the time from qemu's start
to every unit of the role being active, under the same harness the VM tests use.

    .venv/bin/python bench/vm_boot.py [--no-cold]

Cold = no image in the cache (built into a temporary cache directory; Debian's .debs are reused
from the machine's cache, so the mirror's speed is not
measured). Cached = the hash lookup a test session does. The last line is the headline: the worst
role's boot-to-ready seconds. Run it alone: it takes both cores for about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from scripts.vm import boot as harness
from scripts.vm import image as vm_image


def cold_build_seconds() -> float:
    with tempfile.TemporaryDirectory(prefix="vm-bench-cache-") as scratch:
        cache = Path(scratch)
        (vm_image.DEFAULT_CACHE / "debs").mkdir(parents=True, exist_ok=True)
        (cache / "debs").symlink_to(vm_image.DEFAULT_CACHE / "debs")
        built = vm_image.ensure_image(cache)
        assert built.built_seconds is not None
        return built.built_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/vm_boot.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-cold", action="store_true", help="report the cold build time recorded when the cached image was built"
    )
    args = parser.parse_args(argv)

    accel = "KVM" if harness.has_hardware_virtualisation() else "TCG"
    print(
        f"machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"accelerator {accel}, guest 2 vCPU / 1 GiB, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    if args.no_cold:
        cached = vm_image.ensure_image()
        manifest = json.loads((cached.directory / "manifest.json").read_text())
        print(f"image build, cold (recorded {manifest['built_at']}): {manifest['build_seconds']:.1f} s")
    else:
        print(f"image build, cold: {cold_build_seconds():.1f} s")
    started = time.monotonic()
    image = vm_image.ensure_image()
    print(f"image build, cached (hash lookup): {time.monotonic() - started:.2f} s")

    rendered = harness.role_user_data()
    ready: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vm-bench-") as scratch:
        for role in harness.ROLES:
            result = harness.boot(image, role, rendered[role][0], Path(scratch) / role)
            report = next((r for r in result.reports if r.key == "ready"), None)
            if report is None or not report.value.get("all_active"):
                print(f"{role}: units did not all become active; console tail:\n{result.console[-2000:]}")
                return 1
            ready[role] = report.seconds
            print(
                f"{role}: qemu start -> all units active {report.seconds:.1f} s "
                f"(guest uptime {report.value['uptime']:.1f} s); qemu start -> exit {result.seconds:.1f} s"
            )
    worst = max(ready, key=lambda role: ready[role])
    print(f"worst role boot-to-ready: {ready[worst]:.1f} s ({worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
