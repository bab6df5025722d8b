"""`rotate-token` and `rotate-db-password`.

`rotate-token`: move every instance to the Redis AUTH token now in Parameter Store, while
ElastiCache accepts the old and the new one (strategy ROTATE), and only then say how to drop
the old one (SET):

  pause Beat -> each worker, then each web instance, in turn: fetch the secrets again and
  restart its units (warm), check every running unit was started with the new token, verify
  -> resume Beat and check Beat's process too -> print the `pulumi config set` + `up` steps.

Any failure stops the sequence where it is, leaves Beat paused and says which instances are
on the new token; re-running the command starts over (each step is safe to repeat).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import OpsError, UsageError
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
from ops.scripts import refresh_database_password_script, refresh_secrets_script, token_check_script
from ops.verify import VerifyOptions, table_row, verify_instance
from ops.web_drain import WebDrain
from userdata.layout import PROJECT_TAG, STACK_TAG

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


# RDS's managed rotation of a master user secret: the new password is set in the database, then
# the secret's new version becomes AWSCURRENT. A minute or two, as a rule.
DATABASE_ROTATION_TIMEOUT_SECONDS = 300


def database_secret_arn(rds: Any, project: str, stack: str) -> str:
    """The master user secret of the stack's RDS instance (database.mode rds), found by the
    instance's Project and Stack tags, as the instances are: never a secret named on the command line."""
    wanted = {PROJECT_TAG: project, STACK_TAG: stack}
    found = [
        instance
        for page in rds.get_paginator("describe_db_instances").paginate()
        for instance in page["DBInstances"]
        if wanted.items() <= {tag["Key"]: tag["Value"] for tag in instance.get("TagList", [])}.items()
    ]
    if len(found) != 1:
        names = ", ".join(i["DBInstanceIdentifier"] for i in found) or "none"
        raise UsageError(
            f"--stack: expected one RDS instance tagged {PROJECT_TAG}={project}, {STACK_TAG}={stack} "
            f"(database.mode rds), found {len(found)}: {names}"
        )
    secret = found[0].get("MasterUserSecret", {}).get("SecretArn")
    if not secret:
        raise UsageError(
            f"--stack: RDS instance {found[0]['DBInstanceIdentifier']} has no managed master user secret "
            "(manage_master_user_password); the stack's database always has one"
        )
    return str(secret)


def current_version(secrets: Any, secret_arn: str) -> str:
    stages = secrets.describe_secret(SecretId=secret_arn).get("VersionIdsToStages", {})
    return next((version for version, labels in stages.items() if "AWSCURRENT" in labels), "")


@dataclass
class DatabasePasswordRotation:
    """`rotate-db-password`: Secrets Manager's RotateSecret on the stack's database secret (RDS
    sets the new password in the database, then makes it AWSCURRENT), a bounded wait for that, then
    app-database-password run on every instance, so new connections use the new password at once
    rather than at the timer's next minute. Established connections are not touched: the
    database keeps them."""

    executor: Executor
    instances: list[Instance]
    secrets: Any  # boto3 Secrets Manager client
    secret_arn: str
    command_timeout: int
    rotation_timeout: int
    poll_interval: float
    identity_flags: str
    out: Print
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    refreshed: list[str] = field(default_factory=list)  # instance labels, in order

    def run(self) -> None:
        self.out(f"rotate-db-password: {len(self.instances)} instances, secret {self.secret_arn}")
        before = current_version(self.secrets, self.secret_arn)
        self._step("rotate the secret", lambda: self.secrets.rotate_secret(SecretId=self.secret_arn))
        after = self._wait_for_new_version(before)
        self.out(f"the secret's current version is {after} (was {before})")
        for instance in self.instances:
            self._step(f"refresh {instance.label}", partial(self._refresh, instance))
        self.out(f"rotate-db-password: every instance ({len(self.instances)}) wrote the new password")

    def _wait_for_new_version(self, before: str) -> str:
        deadline = self.clock() + self.rotation_timeout
        while True:
            version = current_version(self.secrets, self.secret_arn)
            if version and version != before:
                return version
            if self.clock() >= deadline:
                raise RolloutFailed(
                    self._report(
                        "wait for the new version",
                        f"AWSCURRENT still {before} after "
                        f"{self.rotation_timeout} s (describe-secret shows the rotation)",
                    )
                )
            self.sleep(self.poll_interval)

    def _refresh(self, instance: Instance) -> None:
        result = run_checked(
            self.executor,
            instance,
            "refresh database password",
            refresh_database_password_script(),
            self.command_timeout,
        )
        self.out(f"{instance.label}: {result.stdout.strip().splitlines()[-1]}")
        self.refreshed.append(instance.label)

    def _step(self, name: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (OpsError, BotoCoreError, ClientError) as error:
            raise RolloutFailed(self._report(name, str(error)), exit_code(error)) from None

    def _report(self, step: str, detail: str) -> str:
        return "\n".join(
            [
                f"rotate-db-password STOPPED at step '{step}': {detail}",
                f"  password file rewritten on: {', '.join(self.refreshed) or 'none'}",
                "  the others read the secret again within a minute (app-database-password.timer)",
                f"to refresh them now: python -m ops rotate-db-password {self.identity_flags}",
            ]
        )
