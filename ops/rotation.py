"""`rotate-token`: move every instance to the Redis AUTH token now in Parameter Store, while
ElastiCache accepts the old and the new one (strategy ROTATE), and only then say how to drop
the old one (SET):

  pause Beat -> each worker, then each web instance, in turn: fetch the secrets again and
  restart its units (warm), check every running unit was started with the new token, verify
  -> resume Beat and check Beat's process too -> print the `pulumi config set` + `up` steps.

Any failure stops the sequence where it is, leaves Beat paused and says which instances are
on the new token; re-running the command starts over (each step is safe to repeat).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import OpsError
from ops.executor import Executor
from ops.interrupt import Interrupted
from ops.inventory import Instance, beat_instance, by_role
from ops.rollout import (
    Print,
    RolloutFailed,
    Timeouts,
    exit_code,
    require_passed,
    restart_timeout,
    run_checked,
    switch_beat,
)
from ops.scripts import refresh_secrets_script, token_check_script
from ops.verify import VerifyOptions, table_row, verify_instance
from ops.web_drain import WebDrain

NEXT_STEPS = (
    "pulumi config set --path redis.authTokenUpdateStrategy SET && pulumi up",
    "pulumi config set --path redis.authTokenUpdateStrategy ROTATE && pulumi up",
)


@dataclass
class TokenRotation:
    executor: Executor
    instances: list[Instance]
    timeouts: Timeouts
    verify_options: VerifyOptions
    identity_flags: str
    out: Print
    drain: WebDrain  # takes each web instance out of the load balancer while its units restart
    restart_timeouts: dict[str, int] = field(default_factory=dict)  # instance id -> seconds
    on_new_token: list[str] = field(default_factory=list)  # instance labels, in order
    beat_paused: bool = False

    def run(self) -> None:
        beat = beat_instance(self.instances)
        self.out(f"rotate-token: {len(self.instances)} instances, Beat on {beat.label}")
        self._step("read stop timeouts", self._read_stop_timeouts)
        self._step("pause Beat", lambda: self._beat("pause"))
        for instance in by_role(self.instances, "worker") + by_role(self.instances, "web"):
            self._step(f"move {instance.label}", partial(self._move, instance))
        self._step("resume Beat", lambda: self._beat("resume"))
        self._step("check Beat", lambda: self._check_token(beat, expect_beat=True))
        self.out("rotate-token: every instance runs on the token in Parameter Store; Beat is running")
        self.out("next, so that only the new token works (ElastiCache stops accepting the old one):")
        self.out(f"  {NEXT_STEPS[0]}")
        self.out("then, so that the next authTokenVersion bump starts a rotation instead of cutting the old token:")
        self.out(f"  {NEXT_STEPS[1]}")

    def _read_stop_timeouts(self) -> None:
        for instance in self.instances:
            self.restart_timeouts[instance.instance_id] = restart_timeout(self.executor, instance, self.timeouts)

    def _beat(self, action: str) -> None:
        self.beat_paused = True  # also when a stop or start does not confirm: the state is unknown
        switch_beat(self.executor, self.instances, action, self.timeouts.command, self.out)
        self.beat_paused = action == "pause"

    def _move(self, instance: Instance) -> None:
        self.out(f"{instance.label}: fetching the secrets again and restarting its units ...")
        timeout = self.restart_timeouts[instance.instance_id]
        with self.drain.around_restart(instance):
            run_checked(self.executor, instance, "refresh secrets", refresh_secrets_script(instance.role), timeout)
        self._check_token(instance, expect_beat=False)
        rows = verify_instance(self.executor, instance, self.verify_options, beat_running=False)
        for row in rows:
            self.out(table_row(row))
        require_passed(rows, name_instance=False)
        self.on_new_token.append(instance.label)

    def _check_token(self, instance: Instance, expect_beat: bool) -> None:
        script = token_check_script(instance.role, expect_beat=expect_beat)
        result = run_checked(self.executor, instance, "check token", script, self.timeouts.command)
        self.out(f"{instance.label}: {result.stdout.strip().splitlines()[-1]}")

    def _step(self, name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except (OpsError, BotoCoreError, ClientError) as error:
            if isinstance(error, Interrupted) and self.beat_paused:
                self._resume_after_interrupt()
            raise RolloutFailed(self._report(name, str(error)), exit_code(error)) from None

    def _resume_after_interrupt(self) -> None:
        """Stopped by the operator: Beat runs again (units restarted so far are on the new
        token, the others on the old one; ElastiCache accepts both under ROTATE)."""
        try:
            self._beat("resume")
            self.out("Beat resumed (the command was interrupted)")
        except (OpsError, BotoCoreError, ClientError) as error:
            self.out(f"Beat could not be resumed: {error}")

    def _report(self, step: str, detail: str) -> str:
        lines = [f"rotate-token STOPPED at step '{step}': {detail}"]
        moved = ", ".join(self.on_new_token) or "none"
        lines.append(f"  on the new token (restarted and checked): {moved}")
        if self.beat_paused:
            lines.append(f"  Beat: PAUSED or unknown; to resume it: python -m ops beat resume {self.identity_flags}")
        lines.append(f"to start over: python -m ops rotate-token {self.identity_flags}")
        lines.append("do not move redis.authTokenUpdateStrategy to SET until rotate-token has finished")
        return "\n".join(lines)
