"""Where scripts run. The SSM executor is what operators use; the local executor runs the same
text on this machine (or through a wrapper such as the end-to-end harness), which is how the
checks are proven against real processes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ops.inventory import Instance

DOCUMENT = "AWS-RunShellScript"
# SSM's own statuses; anything else is still on its way.
TERMINAL = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"}
# AWS-RunShellScript's executionTimeout allows at most 48 hours.
MAX_EXECUTION_TIMEOUT = 172800
# Delivery to the agent can take a few seconds beyond the script's own run time.
DELIVERY_GRACE_SECONDS = 30


@dataclass(frozen=True)
class CommandResult:
    status: str  # SSM's status ("Success", "Failed", "TimedOut"...) or the local equivalent
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == "Success" and self.exit_code == 0

    def summary(self) -> str:
        """The last line the script wrote (its own error message, as a rule) and the status."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        tail = f": {lines[-1]}" if lines else ""
        return f"{self.status} (exit {self.exit_code}){tail}"


class Executor(Protocol):
    def run(self, instance: Instance, purpose: str, script: str, timeout: int) -> CommandResult:
        """Runs `script` as root on the instance, giving up after `timeout` seconds."""


class SsmExecutor:
    """send_command with AWS-RunShellScript, then get_command_invocation until the invocation
    ends or the wait runs out (then the command is cancelled, so it does not run on unseen)."""

    def __init__(
        self,
        ssm: Any,
        poll_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ssm, self.poll_interval, self.clock, self.sleep = ssm, poll_interval, clock, sleep

    def run(self, instance: Instance, purpose: str, script: str, timeout: int) -> CommandResult:
        try:
            return self._run(instance, purpose, script, timeout)
        except (ClientError, BotoCoreError) as error:
            # Throttling, AccessDenied, an unmanaged instance: a failed command like any other,
            # so verify shows it in its table and a rollout stops with its state report.
            return CommandResult("NotRun", -1, "", f"SSM refused: {error}")

    def _run(self, instance: Instance, purpose: str, script: str, timeout: int) -> CommandResult:
        command = self.ssm.send_command(
            InstanceIds=[instance.instance_id],
            DocumentName=DOCUMENT,
            Comment=f"ops: {purpose}"[:100],
            Parameters={"commands": script.splitlines(), "executionTimeout": [str(timeout)]},
        )["Command"]
        deadline = self.clock() + timeout + DELIVERY_GRACE_SECONDS
        while True:
            invocation = self._invocation(command["CommandId"], instance.instance_id)
            if invocation and invocation["Status"] in TERMINAL:
                return CommandResult(
                    invocation["Status"],
                    int(invocation.get("ResponseCode", -1)),
                    invocation.get("StandardOutputContent", ""),
                    invocation.get("StandardErrorContent", ""),
                )
            if self.clock() >= deadline:
                seen = invocation["Status"] if invocation else "not delivered"
                return CommandResult(
                    "TimedOut",
                    -1,
                    "",
                    f"no result after {timeout} s (last status: {seen}); "
                    + self._cancel(command["CommandId"], instance.instance_id),
                )
            self.sleep(self.poll_interval)

    def _cancel(self, command_id: str, instance_id: str) -> str:
        try:
            self.ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
        except ClientError as error:
            return f"cancelling it failed too ({error.response['Error']['Code']}): it may still run"
        return "command cancelled"

    def _invocation(self, command_id: str, instance_id: str) -> dict[str, Any] | None:
        try:
            invocation: dict[str, Any] = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as error:
            # Right after send_command the invocation may not exist yet.
            if error.response["Error"]["Code"] == "InvocationDoesNotExist":
                return None
            raise
        return invocation


Runner = Callable[[Instance, list[str], int], "subprocess.CompletedProcess[str]"]


def run_here(instance: Instance, argv: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class LocalExecutor:
    """Runs the script with /bin/sh, as SSM's agent does, through `runner` (default: right here;
    the end-to-end test passes one that enters the simulated machine)."""

    def __init__(self, runner: Runner = run_here) -> None:
        self.runner = runner

    def run(self, instance: Instance, purpose: str, script: str, timeout: int) -> CommandResult:
        try:
            done = self.runner(instance, ["/bin/sh", "-c", script], timeout)
        except subprocess.TimeoutExpired:
            return CommandResult("TimedOut", -1, "", f"no result after {timeout} s")
        return CommandResult("Success" if done.returncode == 0 else "Failed", done.returncode, done.stdout, done.stderr)
