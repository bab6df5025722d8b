"""Workers scaling on the queue backlog, modelled: a small discrete simulation (1 s steps) of one
queue under arrival bursts, comparing target tracking on backlog per in-service instance (for a
few targets, at two boot times) with fixed fleets. Prints time to drain each burst, the tasks'
wait in the queue and the instance-minutes paid, as a table.

What it models (and what AWS does):
- The backlog is sampled once a minute (app-queue-metrics.timer); the policy's metric is
  QueueBacklog / in-service instances (metric math over the group's GroupInServiceInstances).
- Target tracking: scale out after 3 one-minute datapoints above the target, to
  ceil(backlog / target) instances (capacity * metric / target); scale in after 15 datapoints
  below 90 % of the target, to the same formula. Bounds min..max.
- A launched instance is paid from launch and serves only after its boot (the VM suite's
  measured worker boot, 254 s under emulation, and 90 s, a realistic EC2 boot from a prepared
  image). A scaled-in instance stops taking tasks at once and is paid until its running tasks
  have finished (the warm-termination hook), never killed mid-task.
- Tasks: exponential durations (mean 5 s); each instance runs `concurrency` at a time (prod's
  default queue: 4).

Not modelled: Auto Scaling's cooldown details, instance warmup excluded from the metric, the
publisher's jitter. Each figure is the mean over SEEDS runs with different random durations.

    .venv/bin/python bench/scaling_sim.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field

SEEDS = (1, 2, 3, 4, 5)
SAMPLE_SECONDS = 60  # the publisher's period
SCALE_OUT_DATAPOINTS = 3
SCALE_IN_DATAPOINTS = 15
SCALE_IN_FRACTION = 0.9
CONCURRENCY = 4  # Pulumi.prod.yaml: the default queue's concurrency
MEAN_TASK_SECONDS = 5.0
MIN_SIZE, MAX_SIZE = 1, 10
MEASURED_BOOT = 254  # docs/performance.md: bench/vm_boot.py, worker, TCG (2026-11-26)
REALISTIC_BOOT = 90


@dataclass(frozen=True)
class Burst:
    start: int
    tasks: int
    over: int  # seconds the burst's tasks arrive over


@dataclass(frozen=True)
class Workload:
    seconds: int
    baseline_per_second: float
    bursts: tuple[Burst, ...]


# Two and a half hours: a steady trickle (one instance 60 % busy), a big burst (a nightly
# import: 3,000 tasks in 2 minutes) and a smaller one (1,200 in a minute) an hour later.
WORKLOAD = Workload(
    seconds=9000,
    baseline_per_second=0.5,
    bursts=(Burst(start=900, tasks=3000, over=120), Burst(start=4500, tasks=1200, over=60)),
)


@dataclass
class Instance:
    launched: int
    ready: int
    slots: list[float] = field(default_factory=lambda: [0.0] * CONCURRENCY)  # busy until
    draining: bool = False
    terminated: int | None = None

    def in_service(self, now: int) -> bool:
        return now >= self.ready and not self.draining and self.terminated is None


@dataclass
class Policy:
    """Target tracking on backlog per in-service instance; target None: a fixed fleet."""

    target: float | None
    above: int = 0
    below: int = 0

    def desired(self, current: int, backlog: int, in_service: int) -> int:
        if self.target is None:
            return current
        metric = backlog / max(in_service, 1)
        self.above = self.above + 1 if metric > self.target else 0
        self.below = self.below + 1 if metric < self.target * SCALE_IN_FRACTION else 0
        wanted = min(MAX_SIZE, max(MIN_SIZE, math.ceil(backlog / self.target)))
        if self.above >= SCALE_OUT_DATAPOINTS and wanted > current:
            self.above = 0
            return wanted
        if self.below >= SCALE_IN_DATAPOINTS and wanted < current:
            self.below = 0
            return wanted
        return current


@dataclass(frozen=True)
class Outcome:
    drain_seconds: tuple[float, ...]  # per burst: from its start until the backlog is back down
    wait_p95: float
    wait_max: float
    instance_minutes: float
    peak_instances: int


def arrivals(workload: Workload, rng: random.Random) -> list[list[float]]:
    """Per second, the durations of the tasks arriving in it."""
    per_second: list[list[float]] = [[] for _ in range(workload.seconds)]
    for second in range(workload.seconds):
        count = int(workload.baseline_per_second) + (rng.random() < workload.baseline_per_second % 1)
        per_second[second] += [rng.expovariate(1 / MEAN_TASK_SECONDS) for _ in range(count)]
    for burst in workload.bursts:
        for task in range(burst.tasks):
            second = burst.start + task * burst.over // burst.tasks
            per_second[second].append(rng.expovariate(1 / MEAN_TASK_SECONDS))
    return per_second


def simulate(workload: Workload, policy: Policy, initial: int, boot: int, seed: int) -> Outcome:
    per_second = arrivals(workload, random.Random(seed))
    queue: deque[tuple[int, float]] = deque()  # (arrived, duration)
    fleet = [Instance(launched=-boot, ready=0) for _ in range(initial)]
    desired = initial
    waits: list[int] = []
    backlog_by_second: list[int] = []
    for now in range(workload.seconds):
        queue.extend((now, duration) for duration in per_second[now])
        for instance in fleet:
            if instance.terminated is not None:
                continue
            if instance.draining:
                if all(busy <= now for busy in instance.slots):
                    instance.terminated = now
                continue
            if now < instance.ready:
                continue
            for slot, busy in enumerate(instance.slots):
                if busy <= now and queue:
                    arrived, duration = queue.popleft()
                    waits.append(now - arrived)
                    instance.slots[slot] = now + duration
        backlog_by_second.append(len(queue))
        if now % SAMPLE_SECONDS == 0:
            in_service = sum(instance.in_service(now) for instance in fleet)
            desired = policy.desired(desired, len(queue), in_service)
            desired = _follow(fleet, desired, now, boot)
    end = workload.seconds
    paid = sum(((i.terminated if i.terminated is not None else end) - max(i.launched, 0)) for i in fleet)
    return Outcome(
        drain_seconds=tuple(_drain(workload, burst, backlog_by_second) for burst in workload.bursts),
        wait_p95=statistics.quantiles(waits, n=20)[-1],
        wait_max=max(waits),
        instance_minutes=paid / 60,
        peak_instances=_peak(fleet, end),
    )


def _follow(fleet: list[Instance], desired: int, now: int, boot: int) -> int:
    """Launches or drains instances until the group holds `desired` (not draining)."""
    live = [i for i in fleet if i.terminated is None and not i.draining]
    for _ in range(desired - len(live)):
        fleet.append(Instance(launched=now, ready=now + boot))
    # Scale-in takes the newest first (still booting ones cost nothing more to stop).
    for instance in sorted(live, key=lambda i: -i.launched)[: max(0, len(live) - desired)]:
        instance.draining = True
    return desired


def _drain(workload: Workload, burst: Burst, backlog: list[int]) -> float:
    """Seconds from the burst's start until the backlog is under one instance's concurrency."""
    for second in range(burst.start + burst.over, workload.seconds):
        if backlog[second] < CONCURRENCY:
            return float(second - burst.start)
    return math.inf


def _peak(fleet: list[Instance], end: int) -> int:
    events = sorted(
        [(i.launched, 1) for i in fleet] + [(i.terminated if i.terminated is not None else end, -1) for i in fleet]
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def averaged(policy_target: float | None, initial: int, boot: int, seeds: tuple[int, ...]) -> Outcome:
    runs = [simulate(WORKLOAD, Policy(policy_target), initial, boot, seed) for seed in seeds]
    return Outcome(
        drain_seconds=tuple(statistics.mean(r.drain_seconds[b] for r in runs) for b in range(len(WORKLOAD.bursts))),
        wait_p95=statistics.mean(r.wait_p95 for r in runs),
        wait_max=statistics.mean(r.wait_max for r in runs),
        instance_minutes=statistics.mean(r.instance_minutes for r in runs),
        peak_instances=max(r.peak_instances for r in runs),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/scaling_sim.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest settings, once: what CI runs (tests/benches.py)")
    seeds = SEEDS[:1] if parser.parse_args(argv).quick else SEEDS
    bursts = ", ".join(f"{b.tasks} tasks over {b.over} s at t={b.start} s" for b in WORKLOAD.bursts)
    print(
        f"workload: {WORKLOAD.seconds} s, {WORKLOAD.baseline_per_second}/s baseline, bursts: {bursts}; "
        f"tasks exp(mean {MEAN_TASK_SECONDS} s), concurrency {CONCURRENCY}/instance; "
        f"bounds {MIN_SIZE}..{MAX_SIZE}; mean of {len(seeds)} seeds"
    )
    rows: list[tuple[str, str, Outcome]] = []
    for size in (MIN_SIZE, 4, MAX_SIZE):
        rows.append((f"fixed {size}", "-", averaged(None, size, MEASURED_BOOT, seeds)))
    for boot in (MEASURED_BOOT, REALISTIC_BOOT):
        for target in (20, 100, 400):
            rows.append((f"target {target}/instance", f"{boot} s", averaged(target, MIN_SIZE, boot, seeds)))
    header = ("fleet", "boot", "drain 1 (s)", "drain 2 (s)", "wait p95 (s)", "wait max (s)", "inst-min", "peak")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, boot_text, outcome in rows:
        drains = [f"{d:.0f}" if math.isfinite(d) else "never" for d in outcome.drain_seconds]
        cells = (
            name,
            boot_text,
            *drains,
            f"{outcome.wait_p95:.0f}",
            f"{outcome.wait_max:.0f}",
            f"{outcome.instance_minutes:.0f}",
            str(outcome.peak_instances),
        )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
