"""The machine kinds: one value per launch template and Auto Scaling group, built once from the
settings. The renderer renders a kind's user-data, the program gives each kind its role, group
and log writer; nothing else branches on "web", "worker" or Beat. A new kind is one more entry in
`machine_kinds` (and the config that sizes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.schema import Settings
from userdata.layout import BEAT_TAG, BEAT_TAG_VALUE, ROLE_TAG

# What the instance runs (gunicorn, or Celery workers), and so its security group and log group.
Role = Literal["web", "worker"]


@dataclass(frozen=True)
class MachineKind:
    name: str  # begins its resources' names: <project>-<stack>-<name>
    role: Role
    runs_beat: bool
    min_size: int
    desired_capacity: int
    max_size: int
    instance_type: str
    # The Celery queues its workers consume (a web kind: none).
    queues: tuple[str, ...]
    # The instance refresh keeps this much capacity in service.
    min_healthy_percentage: int
    # Every replacement terminates the old instance first (Beat: two would fire each schedule twice).
    terminate_first: bool
    # How long the warm-stop hook holds a terminating instance; None: no hook (web).
    termination_hold_seconds: int | None
    # The web kind is the load balancer's (or the user's) target.
    serves_web: bool
    # Target tracking on the queue backlog per instance (worker.scaling).
    scales_on_backlog: bool

    @property
    def publishes_metrics(self) -> bool:
        """The Beat instance publishes the queue backlog and its heartbeat (app-queue-metrics)."""
        return self.runs_beat


def web_kind(settings: Settings) -> MachineKind:
    web = settings.web
    return MachineKind(
        name="web",
        role="web",
        runs_beat=False,
        min_size=web.min_size,
        desired_capacity=web.desired_capacity,
        max_size=web.max_size,
        instance_type=web.instance_type,
        queues=(),
        min_healthy_percentage=settings.instances.min_healthy_percentage,
        terminate_first=False,
        termination_hold_seconds=None,
        serves_web=True,
        scales_on_backlog=False,
    )


def worker_kind(settings: Settings) -> MachineKind:
    worker = settings.worker
    return MachineKind(
        name="worker",
        role="worker",
        runs_beat=False,
        min_size=worker.min_size,
        desired_capacity=worker.desired_capacity,
        max_size=worker.max_size,
        instance_type=worker.instance_type,
        queues=tuple(queue.name for queue in worker.queues),
        min_healthy_percentage=settings.instances.min_healthy_percentage,
        terminate_first=False,
        termination_hold_seconds=worker.termination_hold_seconds,
        serves_web=False,
        scales_on_backlog=worker.scales,
    )


def beat_kind(settings: Settings) -> MachineKind:
    """A worker of every queue that also runs Beat: a group of exactly one, replaced terminate-first
    (0 % healthy: the old Beat is gone before its replacement launches)."""
    worker = settings.worker
    return MachineKind(
        name="worker-beat",
        role="worker",
        runs_beat=True,
        min_size=1,
        desired_capacity=1,
        max_size=1,
        instance_type=worker.instance_type,
        queues=tuple(queue.name for queue in worker.queues),
        min_healthy_percentage=0,
        terminate_first=True,
        termination_hold_seconds=worker.termination_hold_seconds,
        serves_web=False,
        scales_on_backlog=False,
    )


def machine_kinds(settings: Settings) -> tuple[MachineKind, ...]:
    """Every kind the stack launches, in the order its resources are declared."""
    return (web_kind(settings), worker_kind(settings), *([beat_kind(settings)] if settings.worker.beat else []))


def kind_tags(stack_tags: dict[str, str], kind: MachineKind) -> dict[str, str]:
    """What a kind's template and group carry (and the group propagates to each instance): the ops
    tool finds instances by role, and the Beat instance by its own tag."""
    beat = {BEAT_TAG: BEAT_TAG_VALUE} if kind.runs_beat else {}
    return {**stack_tags, ROLE_TAG: kind.role, **beat}
