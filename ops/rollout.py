"""Beat pause/resume and the deploy/rollback sequence (the guide's runbook as code):

  read releases -> install the release on every instance -> (deploy only) app.releaseCommand
  once, on the Beat instance -> pause Beat -> wait until no task is active or reserved -> each
  worker in turn: activate + restart, verify -> each web instance the same -> verify all ->
  confirm every instance runs the target -> record it as the live release -> resume Beat.

Any failure stops the sequence where it is, leaves Beat as it is (running until the switches
begin, paused after), and raises RolloutFailed whose message says which instance runs which
release and the commands to continue or roll back.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from ops import live_release
from ops.errors import OpsError
from ops.executor import MAX_EXECUTION_TIMEOUT, CommandResult, Executor
from ops.interrupt import Interrupted
from ops.inventory import Instance, beat_instance, by_role
from ops.live_release import LiveReleaseParameter, PinnedRelease
from ops.scripts import (
    beat_script,
    current_release_script,
    install_release_script,
    release_command_script,
    stop_timeouts_script,
    switch_release_script,
    tasks_in_flight_script,
)
from ops.state import RolloutRecord, StateStore
from ops.verify import CheckRow, VerifyOptions, table_row, verify_all, verify_instance
from ops.web_drain import WebDrain

Print = Callable[[str], None]


@dataclass(frozen=True)
class Timeouts:
    command: int = 120  # any short command (read release, Beat, in-flight query)
    drain: int = 300  # waiting for active and reserved tasks to finish
    install: int = 900  # download and build one release (app-release.service allows as much)
    release_command: int = 3600  # app.releaseCommand (app-release-command.service allows as much)
    # Warm restart: workers finish their running tasks first. None: per instance, the longest
    # TimeoutStopSec of the units it restarts plus RESTART_MARGIN_SECONDS.
    restart: int | None = None


# Starting the units again and app-release's symlink swap, beyond the slowest stop.
RESTART_MARGIN_SECONDS = 120


class RolloutFailed(OpsError):
    """The sequence stopped; the message is the state report. exit_code: 1, or 128 + the
    signal that stopped it."""

    def __init__(self, report: str, exit_code: int = 1) -> None:
        super().__init__(report)
        self.exit_code = exit_code


def exit_code(error: Exception) -> int:
    return error.exit_code if isinstance(error, Interrupted) else 1


def run_checked(executor: Executor, instance: Instance, purpose: str, script: str, timeout: int) -> CommandResult:
    result = executor.run(instance, purpose, script, timeout)
    if not result.ok:
        raise OpsError(f"{purpose} on {instance.label}: {result.summary()}")
    return result


BEAT_ACTIONS = {"pause": ("stop", "paused"), "resume": ("start", "resumed")}  # action -> systemctl verb, outcome


def switch_beat(executor: Executor, instances: list[Instance], action: str, timeout: int, out: Print) -> Instance:
    """`beat pause` / `beat resume` on the one Beat instance (refused unless exactly one)."""
    beat = beat_instance(instances)
    verb, outcome = BEAT_ACTIONS[action]
    out(f"Beat: {action} on {beat.label} ...")
    result = run_checked(executor, beat, f"beat {action}", beat_script(verb), timeout)
    out(f"Beat {outcome}: {result.stdout.strip()}")
    return beat


def tasks_in_flight(stdout: str) -> dict[str, list[str]]:
    """`active`/`reserved` -> ["NAME[ID] on NODE", ...] from the in-flight script's output."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        kind, _, reply = line.partition(" ")
        if kind in ("active", "reserved"):
            try:
                nodes = json.loads(reply)
            except json.JSONDecodeError:
                raise OpsError(f"unreadable answer to celery inspect {kind}: {reply[-300:]!r}") from None
            found[kind] = [
                f"{task.get('name')}[{task.get('id')}] on {node}"
                for node, tasks in sorted(nodes.items())
                for task in tasks
            ]
    if set(found) != {"active", "reserved"}:
        raise OpsError(f"unreadable answer to celery inspect active/reserved: {stdout.strip()[-300:]!r}")
    return found


def restart_timeout(executor: Executor, instance: Instance, timeouts: Timeouts) -> int:
    """How long restarting this instance's units may take: the longest TimeoutStopSec of those
    units (read there) plus a margin, or --restart-timeout if it is at least that."""
    result = run_checked(
        executor, instance, "read stop timeouts", stop_timeouts_script(instance.role), timeouts.command
    )
    unit, longest = max(parse_stop_timeouts(result.stdout, instance).items(), key=lambda item: item[1])
    if timeouts.restart is None:
        timeout = longest + RESTART_MARGIN_SECONDS
    elif timeouts.restart < longest:
        raise OpsError(
            f"--restart-timeout {timeouts.restart} is shorter than {unit}'s TimeoutStopSec ({longest} s) "
            f"on {instance.label}: SSM would cancel a warm restart; leave it out or give at least {longest}"
        )
    else:
        timeout = timeouts.restart
    if timeout > MAX_EXECUTION_TIMEOUT:
        raise OpsError(
            f"{unit} on {instance.label} may take {longest} s to stop; SSM allows a command at most "
            f"{MAX_EXECUTION_TIMEOUT} s"
        )
    return timeout


def parse_stop_timeouts(stdout: str, instance: Instance) -> dict[str, int]:
    """unit -> seconds from the stop-timeouts script's `UNIT SECONDS` lines."""
    stops: dict[str, int] = {}
    for line in stdout.splitlines():
        unit, _, seconds = line.partition(" ")
        if not seconds.isdigit():
            raise OpsError(f"{instance.label}: {unit} has no TimeoutStopSec in seconds ({line!r})")
        stops[unit] = int(seconds)
    if not stops:
        raise OpsError(f"{instance.label}: no unit to restart was found")
    return stops


def require_passed(rows: list[CheckRow], name_instance: bool) -> None:
    failed = [row for row in rows if not row.ok]
    if failed:
        raise OpsError(
            "; ".join(
                f"{row.check}{f' on {row.instance.label}' if name_instance else ''}: {row.detail}" for row in failed
            )
        )


@dataclass
class Rollout:
    """One deploy or rollback to `release` over the stack's instances."""

    kind: str  # "deploy" or "rollback": only wording
    release: str
    sha256: str  # the artifact's digest: installs check it, the live release records it
    executor: Executor
    instances: list[Instance]
    timeouts: Timeouts
    verify_options: VerifyOptions
    store: StateStore
    live: LiveReleaseParameter
    identity_flags: str  # e.g. "--stack prod --region eu-west-1", for the continue/rollback hints
    out: Print
    drain: WebDrain  # takes each web instance out of the load balancer while its units restart
    poll_interval: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    releases: dict[str, str] = field(default_factory=dict)  # instance id -> release it runs
    notes: dict[str, str] = field(default_factory=dict)  # instance id -> what went wrong there
    restart_timeouts: dict[str, int] = field(default_factory=dict)  # instance id -> activate's timeout
    # running | paused | unknown (a stop that did not confirm) | resumed (after an interruption)
    beat_state: str = "running"
    previous: str | None = None
    previous_sha256: str | None = None
    live_before: PinnedRelease | None = None  # the live release as the rollout found it

    def run(self) -> None:
        beat = beat_instance(self.instances)  # refuse a stack without exactly one Beat up front
        self.out(f"{self.kind} {self.release}: {len(self.instances)} instances, Beat on {beat.label}")
        self._step("read releases", None, self._read_releases)
        self._step("read stop timeouts", None, self._read_stop_timeouts)
        self._remember(complete=False)
        for instance in self.instances:
            self._install(instance)
        if self.kind == "deploy":  # a rollback returns to code whose database changes are done
            self._step("release command", beat, lambda: self._release_command(beat))
        self._step("pause Beat", beat, self._pause)
        self._step("wait for tasks in flight", None, self._drain)
        for instance in by_role(self.instances, "worker") + by_role(self.instances, "web"):
            self._switch(instance)
        self._step("verify all", None, self._verify_all)
        self._step("confirm releases", None, self._confirm_releases)
        self._step("record the live release", None, self._record_live)
        self._step("resume Beat", beat, self._resume)
        self._remember(complete=True)
        self.out(f"{self.kind} {self.release}: done; every instance runs {self.release}, Beat is running")

    # --- steps ----------------------------------------------------------------------------------

    def _read_releases(self) -> None:
        for instance in self.instances:
            result = run_checked(
                self.executor, instance, "read current release", current_release_script(), self.timeouts.command
            )
            self.releases[instance.instance_id] = (
                result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "none"
            )
            self.out(f"  {instance.label}: {self.releases[instance.instance_id]}")
        live = live_release.read(self.live.ssm, self.live.name)
        self.live_before = self.live_before or live
        self.out(f"  live release ({self.live.name}): {live}")

    def _read_stop_timeouts(self) -> None:
        """Each switching instance's restart timeout, from its own units, before Beat is paused:
        SSM cancelling a warm restart half-way leaves the release switched and tasks killed."""
        for instance in self.instances:
            if self.releases.get(instance.instance_id) != self.release:
                self.restart_timeouts[instance.instance_id] = restart_timeout(self.executor, instance, self.timeouts)

    def _remember(self, complete: bool) -> None:
        record = self.store.load()
        if record and record.release == self.release:
            # Continuing (or repeating) this rollout: the release it replaced is still the way back.
            self.previous, self.previous_sha256 = record.previous, record.previous_sha256
        else:
            before = {release for release in self.releases.values() if release != self.release}
            # Mixed releases and no record of this rollout: no single way back is known.
            self.previous = before.pop() if len(before) == 1 else None
            # The way back's digest is the one the live release pinned for it.
            live = self.live_before
            self.previous_sha256 = live.sha256 if live and live.release == self.previous else None
        self.store.save(RolloutRecord(self.release, self.previous, complete, self.sha256, self.previous_sha256))

    def _pause(self) -> None:
        self.beat_state = "unknown"  # a stop that fails may still have stopped it
        switch_beat(self.executor, self.instances, "pause", self.timeouts.command, self.out)
        self.beat_state = "paused"

    def _resume(self) -> None:
        switch_beat(self.executor, self.instances, "resume", self.timeouts.command, self.out)
        self.beat_state = "running"

    def _drain(self) -> None:
        """With Beat paused nothing new is scheduled; wait for what workers hold to finish, so a
        restart never has to wait out (or cut short) a long task."""
        asker = by_role(self.instances, "worker")[0]
        deadline = self.clock() + self.timeouts.drain
        while True:
            result = run_checked(
                self.executor,
                asker,
                "tasks in flight",
                tasks_in_flight_script(self.verify_options.check_timeout),
                self.timeouts.command,
            )
            found = tasks_in_flight(result.stdout)
            busy = found["active"] + found["reserved"]
            if not busy:
                self.out("no task active or reserved")
                return
            summary = f"{len(found['active'])} active, {len(found['reserved'])} reserved: " + "; ".join(busy)
            if self.clock() >= deadline:
                raise OpsError(f"still running after {self.timeouts.drain} s: {summary}")
            self.out(f"waiting for {summary}")
            self.sleep(self.poll_interval)

    def _install(self, instance: Instance) -> None:
        """Every instance has the release before the release command runs and any switches. One
        already on it is sent the install too: app-release checks that its copy came from the
        artifact with this digest, which the live release is about to pin."""
        on_it = self.releases.get(instance.instance_id) == self.release
        self.out(f"{instance.label}: {'checking the digest of' if on_it else 'installing'} {self.release} ...")
        self._step(
            "install",
            instance,
            lambda: run_checked(
                self.executor,
                instance,
                f"install {self.release}",
                install_release_script(self.release, self.sha256),
                self.timeouts.install,
            ),
        )

    def _release_command(self, instance: Instance) -> None:
        """app.releaseCommand once for the release, in its venv, before any instance runs it; a
        failure stops the deploy with nothing switched, the command's output in the report."""
        self.out(f"{instance.label}: release command for {self.release} ...")
        result = self.executor.run(
            instance,
            f"release command {self.release}",
            release_command_script(self.release),
            self.timeouts.release_command,
        )
        output = (result.stdout + result.stderr).rstrip()
        if not result.ok:
            raise OpsError(f"{result.status} (exit {result.exit_code}); nothing switched; its output:\n{output}")
        for line in output.splitlines():
            self.out(f"  {line}")

    def _switch(self, instance: Instance) -> None:
        if self.releases.get(instance.instance_id) == self.release:
            self.out(f"{instance.label}: already on {self.release}; verifying only")
        else:
            self.out(f"{instance.label}: activating {self.release} and restarting its units ...")
            self._step("activate and restart", instance, lambda: self._activate(instance))
        self._step("verify", instance, lambda: self._verify_one(instance))

    def _activate(self, instance: Instance) -> None:
        with self.drain.around_restart(instance):
            run_checked(
                self.executor,
                instance,
                f"activate {self.release}",
                switch_release_script(instance.role, self.release),
                self.restart_timeouts[instance.instance_id],
            )
        self.releases[instance.instance_id] = self.release

    def _verify_one(self, instance: Instance) -> None:
        rows = verify_instance(self.executor, instance, self.verify_options, beat_running=False)
        for row in rows:
            self.out(table_row(row))
        require_passed(rows, name_instance=False)

    def _verify_all(self) -> None:
        rows = verify_all(
            self.executor,
            self.instances,
            self.verify_options,
            beat_running=False,
            report=lambda row: self.out(table_row(row)),
        )
        require_passed(rows, name_instance=True)

    def _confirm_releases(self) -> None:
        """Read back what each instance runs: one rebooted mid-rollout boots the live release,
        still the old one, and must not be recorded as switched."""
        self._read_releases()
        behind = [i.label for i in self.instances if self.releases.get(i.instance_id) != self.release]
        if behind:
            raise OpsError(f"not on {self.release}: {', '.join(behind)}")

    def _record_live(self) -> None:
        pinned = PinnedRelease(self.release, self.sha256)
        live_release.record(self.live.ssm, self.live.name, pinned)
        self.out(f"live release ({self.live.name}): {pinned}; new instances boot it")

    # --- failure --------------------------------------------------------------------------------

    def _step(self, name: str, instance: Instance | None, action: Callable[[], object]) -> None:
        try:
            action()
        except (OpsError, BotoCoreError, ClientError) as error:  # AWS refusing mid-way still gets the report
            if instance is not None:
                self.notes[instance.instance_id] = f"<- {name} failed here"
                if name == "activate and restart":
                    self._reread(instance)
            if isinstance(error, Interrupted):
                self._resume_after_interrupt()
            raise RolloutFailed(self.failure_report(name, str(error)), exit_code(error)) from None

    def _resume_after_interrupt(self) -> None:
        """An operator who stops the command gets the stack back as it runs: Beat resumed. (A
        failed step leaves it paused instead, for the operator to decide.)"""
        if self.beat_state == "running":
            return
        try:
            self._resume()
            self.beat_state = "resumed"
        except (OpsError, BotoCoreError, ClientError) as error:
            self.out(f"Beat could not be resumed: {error}")

    def _reread(self, instance: Instance) -> None:
        """After a failed activate/restart the symlink may or may not have moved: ask."""
        result = self.executor.run(instance, "read current release", current_release_script(), self.timeouts.command)
        lines = result.stdout.strip().splitlines()
        self.releases[instance.instance_id] = lines[-1] if result.ok and lines else "unknown (could not read it)"

    def hint(self, *words: str) -> str:
        return " ".join(("python -m ops", *(shlex.quote(word) for word in words), self.identity_flags))

    def failure_report(self, step: str, detail: str) -> str:
        lines = [f"{self.kind} {self.release} STOPPED at step '{step}': {detail}", "state of the stack now:"]
        for instance in self.instances:
            release = self.releases.get(instance.instance_id, "not read")
            role = instance.role + (" +beat" if instance.beat else "")
            note = self.notes.get(instance.instance_id, "")
            lines.append(f"  {instance.label:<40} {role:<12} release {release} {note}".rstrip())
        beat = beat_instance(self.instances)
        lines.append(
            {
                "paused": f"  Beat: PAUSED (celery-beat.service stopped on {beat.label})",
                "unknown": f"  Beat: UNKNOWN (the stop on {beat.label} did not confirm; it may be stopped)",
                "running": "  Beat: running (never paused)",
                "resumed": f"  Beat: running (resumed on {beat.label} when the command was interrupted)",
            }[self.beat_state]
        )
        lines.append(f"to continue: {self.hint(self.kind, '--release', self.release, '--sha256', self.sha256)}")
        if self.previous:
            digest = ("--sha256", self.previous_sha256) if self.previous_sha256 else ()
            lines.append(f"to roll back: {self.hint('rollback', '--release', self.previous, *digest)}")
        else:
            unknown = " (no single previous release is known)"
            lines.append(f"to roll back: {self.hint('rollback')} --release <release>{unknown}")
        if self.beat_state not in ("running", "resumed"):
            lines.append(f"to resume Beat as it is: {self.hint('beat', 'resume')}")
        return "\n".join(lines)
