"""VM boot A/B: one role booted alternately with this tree's user-data (A) and a git revision's
(B), each on its own tree's image, in one run, so that a boot change is measured against what it
changes and not against another run's figures (issue 25.1's proof: before and after, side by
side). Same harness and probe as bench/vm_boot.py.

    .venv/bin/python bench/vm_boot_ab.py [--against REV] [--role ROLE] [--pairs N] [--first] [--quick]

Boots go A B B A A B ..., so load that drifts during the run weighs on both sides alike. Each boot
is an instance Auto Scaling launches into a running stack (as bench/vm_boot.py's role boots), or
with --first a stack's first instance, which runs the release command. Printed per boot: the
time from qemu's start to every unit of the role active, and the CPU each of the role's units
has used by then (systemd's accounting); then each side's means and B - A per pair.

REV is HEAD unless given: the change not yet committed. Its side is rendered, and its image found
or built (a changed guest or builder makes another image), by REV's own code, extracted with
`git archive` and run with this venv, as this tree's side is by this tree's; the host side of the
boot (qemu, the probe's reports) is this tree's. --quick renders both sides and prints the plan
without booting (the guardrails lane runs it so: tests/benches.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _revision import REPO, order, revision_tree  # bench/, this script's directory
from vm_boot import seconds, timed_boot

from scripts.vm import boot as harness
from scripts.vm import image as vm_image

RELEASE_UNIT = "app-release.service"

# Run by each side's tree (cwd): its roles' user-data, its image (built into the shared cache if absent),
# and its live release, as JSON on stdout's last line.
SIDE_SCRIPT = """
import json, sys
from scripts.vm import boot, image
stack = boot.vm_stack()
built = None if sys.argv[1] == "plan" else image.ensure_image(stack.store)
print(json.dumps({
    "roles": {role: stack.roles[role][0] for role in stack.roles},
    "image": None if built is None else [str(built.directory), built.key],
    "key": image.cache_key(image.machine_mirror(), stack.store),
    "parameters": boot.seeded_parameters(stack, stack.store.release),
    "harness": boot.__file__,
}))
"""


@dataclass(frozen=True)
class Side:
    name: str
    user_data: str
    image: vm_image.Image | None  # None: --quick, nothing booted
    key: str
    parameters: dict[str, Any]
    seconds: float  # to render it (and find or build its image)


def side_of(tree: Path, name: str, role: str, quick: bool) -> Side:
    """`tree`'s side, rendered (and its image found or built) by `tree`'s own code."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SIDE_SCRIPT, "plan" if quick else "image"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"vm_boot_ab.py: {name} did not render its side:\n{done.stderr[-3000:]}")
    side = json.loads(done.stdout.splitlines()[-1])
    if not Path(side["harness"]).is_relative_to(tree):  # the venv's editable install points at REPO
        raise SystemExit(f"vm_boot_ab.py: {name} imported {side['harness']}, not its own tree's")
    if role not in side["roles"]:
        raise SystemExit(f"vm_boot_ab.py: {name} has no role {role!r}; it has {sorted(side['roles'])}")
    image = None if side["image"] is None else vm_image.Image(Path(side["image"][0]), side["image"][1], None)
    return Side(name, side["roles"][role], image, side["key"], side["parameters"], time.monotonic() - started)


def cpu_seconds(result: harness.Boot) -> dict[str, float]:
    """Each of the role's units' CPU so far, from the probe's `show` reports."""
    return {report["unit"]: seconds(report["properties"], "CPUUsageNSec", 1e9) or 0.0 for report in result.all("show")}


def cpu_line(used: dict[str, float]) -> str:
    """`app-release` first, then the role's other units, then all together."""
    units = sorted(used, key=lambda unit: (unit != RELEASE_UNIT, unit))
    each = ", ".join(f"{unit.removesuffix('.service')} {used[unit]:.1f}" for unit in units)
    return f"CPU s: {each}; all {sum(used.values()):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/vm_boot_ab.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--against", default="HEAD", metavar="REV", help="the git revision B is rendered from (default: %(default)s)"
    )
    parser.add_argument(
        "--role", choices=harness.ROLES, default="worker-beat", help="the role booted (default: %(default)s)"
    )
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs, at least 1 (default: %(default)s)")
    parser.add_argument("--first", action="store_true", help="a stack's first instance (runs the release command)")
    parser.add_argument("--quick", action="store_true", help="render both sides and print the plan; boot nothing")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error(f"--pairs {args.pairs}: at least 1")

    with tempfile.TemporaryDirectory(prefix="vm-boot-ab-") as name:
        scratch = Path(name)
        tree, commit = revision_tree(args.against, scratch, "vm_boot_ab.py")
        sides = (
            side_of(REPO, "A (this tree)", args.role, args.quick),
            side_of(tree, f"B ({args.against}, {commit[:12]})", args.role, args.quick),
        )
        how = "a stack's first instance" if args.first else "into a running stack"
        print(
            f"vm_boot_ab: {args.role}, {how}, {args.pairs} pairs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        for side in sides:
            print(f"  {side.name}: user-data {len(side.user_data)} characters, image {side.key}")
            print(f"    rendered, image ready: {side.seconds:.1f} s")
        if sides[0].user_data == sides[1].user_data and sides[0].key == sides[1].key:
            print("  the two sides boot the same user-data on the same image: an A/A run")
        plan = order(args.pairs)
        print("  order: " + " ".join("AB"[side] for side in plan))
        if args.quick:
            return 0
        taken: list[list[float]] = [[], []]
        cpu: list[list[dict[str, float]]] = [[], []]
        for number, index in enumerate(plan, 1):
            side = sides[index]
            assert side.image is not None
            data = {"parameters": side.parameters, "timing": True, "running_stack": not args.first}
            # The name is also the boot's directory, which qemu's -drive options take: no comma.
            name = f"boot-{number}-{side.name[0]}"
            result = timed_boot(side.image, name, args.role, side.user_data, scratch, data)
            if result is None:
                return 1
            taken[index].append(result.seconds_to("ready"))
            cpu[index].append(cpu_seconds(result))
            print(f"  {cpu_line(cpu[index][-1])}")
    differences = [b - a for a, b in zip(*taken, strict=True)]
    for side, figures, used in zip(sides, taken, cpu, strict=True):
        print(f"{side.name}: mean {statistics.mean(figures):.1f} s ({', '.join(f'{s:.1f}' for s in figures)})")
        units = {unit for boot in used for unit in boot}
        print(f"  mean {cpu_line({unit: statistics.mean(boot.get(unit, 0.0) for boot in used) for unit in units})}")
    mean = statistics.mean(differences)
    print(
        f"B - A per pair: {', '.join(f'{d:+.1f}' for d in differences)} s; "
        f"mean {mean:+.1f} s ({mean / statistics.mean(taken[0]):+.1%} of A)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
