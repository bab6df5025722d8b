"""python -m ops: verify, beat pause|resume, deploy, rollback, rotate-token, rotate-db-password
(docs/database.md), exec (see docs/operations.md and docs/release-command.md), build-release
(README: "Ship your app")."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from ops import build_release
from ops.drill import FailoverDrill
from ops.errors import OpsError, UsageError
from ops.executor import MAX_EXECUTION_TIMEOUT, Executor, SsmExecutor
from ops.interrupt import Interrupted, stop_on_signals
from ops.inventory import Instance, discover
from ops.live_release import LiveReleaseParameter, built_sha256, checked_sha256, default_parameter
from ops.one_off import pick_instance, run_one_off
from ops.rollout import RESTART_MARGIN_SECONDS, Rollout, RolloutFailed, Timeouts, switch_beat
from ops.rotation import (
    DATABASE_ROTATION_TIMEOUT_SECONDS,
    DatabasePasswordRotation,
    TokenRotation,
    database_secret_arn,
)
from ops.scaling import recover_left_suspended, scaling_held, stack_groups
from ops.stack import StackLocation, checked_release, load_outputs, region_from_environment, resolve_stack
from ops.state import RolloutRecord, StateStore, default_state_dir
from ops.verify import DEFAULT_HEALTHCHECK_TASK, TABLE_HEADER, VerifyOptions, format_cells, table_row, verify_all
from ops.web_drain import WebDrain, recover_left_in_standby
from userdata.layout import ROLES


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line naming the argument (no usage dump), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def seconds(text: str) -> int:
    """Every timeout bounds an SSM command, so SSM's own maximum bounds each of them."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_EXECUTION_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of seconds from 1 to {MAX_EXECUTION_TIMEOUT} (SSM's maximum)"
        )
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


# The commands that suspend Auto Scaling processes or put instances in Standby: a run of one
# resumes what an earlier, killed run left suspended; other commands only say so.
SUSPENDING_COMMANDS = ("deploy", "rollback", "rotate-token")


def out(line: str) -> None:
    print(line, flush=True)  # progress as it happens, also through a pipe


def common_options() -> OneLineParser:
    common = OneLineParser(add_help=False)
    common.add_argument("--stack", help="Pulumi stack name (the instances' Stack tag); default: the outputs' 'stack'")
    common.add_argument(
        "--outputs",
        metavar="FILE",
        help="the JSON of `pulumi stack output --json` ('-' for stdin): stack name and region",
    )
    common.add_argument(
        "--region",
        help="AWS region; default: the outputs' 'region', then AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config",
    )
    common.add_argument(
        "--command-timeout",
        type=seconds,
        default=120,
        metavar="SECONDS",
        help="how long one short SSM command may take (default 120)",
    )
    common.add_argument(
        "--poll-interval",
        type=positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="how often to poll SSM and the task queues (default 2)",
    )
    return common


def verify_options() -> OneLineParser:
    options = OneLineParser(add_help=False)
    options.add_argument(
        "--healthcheck-task",
        default=DEFAULT_HEALTHCHECK_TASK,
        metavar="NAME",
        help=f"task the healthcheck round-trip sends (default {DEFAULT_HEALTHCHECK_TASK})",
    )
    options.add_argument(
        "--check-timeout",
        type=seconds,
        default=20,
        metavar="SECONDS",
        help="each check's own wait: Redis PING, celery ping, a worker accepting the healthcheck task (default 20)",
    )
    return options


def restart_options() -> OneLineParser:
    options = OneLineParser(add_help=False)
    options.add_argument(
        "--restart-timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="how long restarting the units may take on one instance (default: the longest TimeoutStopSec "
        f"of the units it restarts there, plus {RESTART_MARGIN_SECONDS})",
    )
    return options


def rollout_options() -> OneLineParser:
    options = OneLineParser(add_help=False)
    options.add_argument(
        "--drain-timeout",
        type=seconds,
        default=300,
        metavar="SECONDS",
        help="how long to wait for active and reserved tasks to finish (default 300)",
    )
    options.add_argument(
        "--install-timeout",
        type=seconds,
        default=900,
        metavar="SECONDS",
        help="how long installing the release may take on one instance (default 900)",
    )
    options.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        metavar="DIR",
        help="where the previous release of each stack is recorded (default %(default)s)",
    )
    return options


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m ops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, checks, rollout, restart = common_options(), verify_options(), rollout_options(), restart_options()
    commands.add_parser(
        "verify",
        parents=[common, checks],
        help="check every instance; exit 1 on any failure",
        description="On every instance of the stack: env files present, units active, Redis PING "
        "over TLS with the token, celery inspect ping (workers), a healthcheck task "
        "round-trip (web). Prints a table; exits 1 on any failure.",
    )
    beat = commands.add_parser(
        "beat",
        help="pause or resume Celery Beat",
        description="Stop or start celery-beat.service on the one instance tagged "
        "celery-beat=true; refused when zero or several carry the tag.",
    )
    beat_actions = beat.add_subparsers(dest="action", required=True, metavar="ACTION")
    beat_actions.add_parser(
        "pause",
        parents=[common],
        help="stop celery-beat.service",
        description="Stop celery-beat.service on the Beat instance.",
    )
    beat_actions.add_parser(
        "resume",
        parents=[common],
        help="start celery-beat.service",
        description="Start celery-beat.service on the Beat instance.",
    )
    deploy = commands.add_parser(
        "deploy",
        parents=[common, checks, rollout, restart],
        help="roll a release out",
        description="Install the release on every instance, run app.releaseCommand once (on the "
        "Beat instance), pause Beat, wait for tasks in flight, then per worker and per web "
        "instance: activate, restart, verify; verify all; resume Beat.",
    )
    deploy.add_argument("--release", required=True, type=release_argument, help="the release to roll out")
    deploy.add_argument("--sha256", type=sha256_argument, metavar="HEX", help=SHA256_HELP)
    deploy.add_argument(
        "--release-command-timeout",
        type=seconds,
        default=Timeouts.release_command,
        metavar="SECONDS",
        help=f"how long app.releaseCommand may take (default {Timeouts.release_command})",
    )
    rollback = commands.add_parser(
        "rollback",
        parents=[common, checks, rollout, restart],
        help="the same sequence back to the previous release",
        description="Deploy the previous release (recorded by the last deploy) or --release.",
    )
    rollback.add_argument(
        "--release", type=release_argument, help="release to go back to (default: the recorded previous one)"
    )
    rollback.add_argument("--sha256", type=sha256_argument, metavar="HEX", help=SHA256_HELP + "; or the recorded one")
    commands.add_parser(
        "rotate-token",
        parents=[common, checks, restart_options()],
        help="move every instance to the new Redis token (strategy ROTATE)",
        description="With the stack on authTokenUpdateStrategy ROTATE and a new authTokenVersion "
        "applied: pause Beat; per worker, then per web instance: fetch the secrets again, restart "
        "the units warm, check every unit runs with the token now in Parameter Store, verify; "
        "resume Beat; then print the pulumi steps to SET and back to ROTATE.",
    )
    rotate_db = commands.add_parser(
        "rotate-db-password",
        parents=[common],
        help="rotate the RDS password now (database.mode rds)",
        description="Secrets Manager RotateSecret on the stack's database secret (of the RDS instance "
        "tagged with the project and stack), wait until its current version changed, then run "
        "app-database-password on every instance so new connections use the new password at once. "
        "Nothing restarts; established connections stay (docs/database.md).",
    )
    rotate_db.add_argument(
        "--rotation-timeout",
        type=seconds,
        default=DATABASE_ROTATION_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long RDS may take to make the new password current (default {DATABASE_ROTATION_TIMEOUT_SECONDS})",
    )
    # Listed here for --help; it needs no stack or AWS, so main() hands it its arguments first.
    commands.add_parser(
        "build-release", add_help=False, help="build a Django project's release artifact for the stack's architecture"
    )
    one_off = commands.add_parser(
        "exec",
        parents=[common],
        help="run a one-off command (manage.py ...) on one instance",
        description="Run a command as the app user in the current release of one instance, with the "
        "app units' env files, over SSM; print its output and exit with its exit code. "
        "`-- manage.py ARGS` runs the release's python manage.py; any other command is looked up in "
        "the release's venv first. The whole run is bounded by --command-timeout.",
    )
    one_off.add_argument("--role", choices=ROLES, help="an instance of this role (default: the first, web first)")
    one_off.add_argument("--instance", metavar="ID", help="this instance of the stack")
    one_off.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="what to run")
    drill = commands.add_parser("drill", help="rehearse a failure on the stack (docs/failover.md)")
    drill_kinds = drill.add_subparsers(dest="action", required=True, metavar="DRILL")
    failover = drill_kinds.add_parser(
        "failover",
        parents=[common, checks],
        help="ElastiCache TestFailover; time until workers consume again",
        description="Run ElastiCache's TestFailover on the stack's replication group (tagged with the "
        "project and stack), wait for the new primary, then run the verify checks on every instance "
        "until all pass (the healthcheck task round-trips through a worker); print both times.",
    )
    failover.add_argument(
        "--drill-timeout",
        type=seconds,
        default=600,
        metavar="SECONDS",
        help="how long each wait may take: the new primary, then every check passing (default 600)",
    )
    return parser


def release_argument(text: str) -> str:
    try:
        return checked_release(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--release: ")) from None


SHA256_HELP = (
    "the artifact's SHA-256, pinned in the live release (default: build/releases/RELEASE.tar.gz.sha256 "
    "as build-release wrote it)"
)


def sha256_argument(text: str) -> str:
    try:
        return checked_sha256(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--sha256: ")) from None


def rollout_sha256(release: str, given: str | None, record: RolloutRecord | None) -> str:
    """The digest the live release will pin: --sha256, else the one recorded with the release
    in the state, else the one build-release wrote here."""
    recorded = {}
    if record:
        recorded = {record.previous: record.previous_sha256, record.release: record.sha256}
    digest = given or recorded.get(release) or built_sha256(release)
    if digest is None:
        raise UsageError(
            f"--sha256: no digest known for release {release}; give the one build-release printed "
            f"(its {release}.tar.gz.sha256)"
        )
    return digest


def identity_flags(location: StackLocation) -> str:
    """The flags that name the stack, repeated in the printed hints so they run as printed."""
    flags = ["--stack", location.stack]
    if location.region:  # also when it came from the outputs, so the hint works without them
        flags += ["--region", location.region]
    return " ".join(shlex.quote(flag) for flag in flags)


def aws_session(location: StackLocation) -> Any:
    """boto3 is imported here, when a command talks to AWS: importing it is half of the tool's
    startup, which `build-release` and a refused argument never need."""
    import boto3

    return boto3.session.Session(region_name=location.region or region_from_environment())


def aws_clients(location: StackLocation) -> tuple[Any, Any, Any, Any]:
    session = aws_session(location)
    if not session.region_name:
        raise UsageError(
            "--region: none given, none in the outputs, AWS_REGION, AWS_DEFAULT_REGION or the AWS config file"
        )
    return session.client("ec2"), session.client("ssm"), session.client("autoscaling"), session.client("elbv2")


def main(argv: Sequence[str] | None = None, executor: Executor | None = None) -> int:
    """executor: tests and the local proof pass their own; operators get SSM."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["build-release"]:
        return build_release.main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "exec":
        args.argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not args.argv or args.argv[0].startswith("-"):
            parser.error("exec: give the command after --, e.g. `-- manage.py showmigrations`")
    try:
        with stop_on_signals():
            outputs = load_outputs(args.outputs) if args.outputs else None
            location = resolve_stack(args.stack, args.region, outputs)
            ec2, ssm, autoscaling, elbv2 = aws_clients(location)
            # Before anything else: what a run killed outright left suspended or in Standby.
            groups = stack_groups(autoscaling, location.project, location.stack)
            recover = args.command in SUSPENDING_COMMANDS
            recover_left_suspended(autoscaling, groups, out, resume_them=recover)
            recover_left_in_standby(autoscaling, groups, out, resume_them=recover)
            instances = discover(ec2, location.project, location.stack)
            live = LiveReleaseParameter(
                ssm, (outputs or {}).get("releaseParameter") or default_parameter(location.project, location.stack)
            )
            executor = executor or SsmExecutor(ssm, poll_interval=args.poll_interval)
            drain = WebDrain(autoscaling, elbv2, out, poll_interval=args.poll_interval)
            return run_command(args, location, instances, executor, live, autoscaling, drain)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except RolloutFailed as error:
        print(str(error), file=sys.stderr, flush=True)
        return error.exit_code
    except Interrupted as error:  # before any step began: nothing to report but the stop
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return error.exit_code
    except OpsError as error:
        print(f"{parser.prog}: failed: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"{parser.prog}: AWS error: {error}", file=sys.stderr)
        return 1


def run_command(
    args: argparse.Namespace,
    location: StackLocation,
    instances: list[Instance],
    executor: Executor,
    live: LiveReleaseParameter,
    autoscaling: Any,
    drain: WebDrain,
) -> int:
    if args.command == "verify":
        return verify_command(args, instances, executor)
    if args.command == "beat":
        switch_beat(executor, instances, args.action, args.command_timeout, out)
        return 0
    if args.command == "exec":
        instance = pick_instance(instances, args.role, args.instance)
        return run_one_off(executor, instance, args.argv, args.command_timeout)
    if args.command == "drill":
        elasticache = aws_session(location).client("elasticache")
        FailoverDrill(
            elasticache, executor, instances, checks_from(args), out, args.poll_interval, args.drill_timeout
        ).run(location.project, location.stack)
        return 0
    if args.command == "rotate-db-password":
        session = aws_session(location)
        secret_arn = database_secret_arn(session.client("rds"), location.project, location.stack)
        DatabasePasswordRotation(
            executor=executor,
            instances=instances,
            secrets=session.client("secretsmanager"),
            secret_arn=secret_arn,
            command_timeout=args.command_timeout,
            rotation_timeout=args.rotation_timeout,
            poll_interval=args.poll_interval,
            identity_flags=identity_flags(location),
            out=out,
        ).run()
        return 0
    if args.command == "rotate-token":
        TokenRotation(
            executor=executor,
            instances=instances,
            timeouts=Timeouts(command=args.command_timeout, restart=args.restart_timeout),
            verify_options=checks_from(args),
            identity_flags=identity_flags(location),
            out=out,
            drain=drain,
        ).run()
        return 0
    return rollout_command(args, location, instances, executor, live, autoscaling, drain)


def checks_from(args: argparse.Namespace) -> VerifyOptions:
    return VerifyOptions(
        healthcheck_task=args.healthcheck_task, check_timeout=args.check_timeout, command_timeout=args.command_timeout
    )


def verify_command(args: argparse.Namespace, instances: list[Instance], executor: Executor) -> int:
    out(format_cells(TABLE_HEADER))
    rows = verify_all(executor, instances, checks_from(args), beat_running=True, report=lambda row: out(table_row(row)))
    failed = [row for row in rows if not row.ok]
    out(f"{len(rows) - len(failed)} of {len(rows)} checks passed on {len(instances)} instances")
    return 1 if failed else 0


def rollout_command(
    args: argparse.Namespace,
    location: StackLocation,
    instances: list[Instance],
    executor: Executor,
    live: LiveReleaseParameter,
    autoscaling: Any,
    drain: WebDrain,
) -> int:
    store = StateStore(args.state_dir, location.project, location.stack)
    release = args.release
    record = store.load()
    if release is None:  # rollback without --release
        if record is None or record.previous is None:
            raise UsageError(
                f"--release: no previous release recorded for stack {location.stack} in {store.path}; "
                "name the release to go back to"
            )
        release = record.previous
    rollout = Rollout(
        kind=args.command,
        release=release,
        sha256=rollout_sha256(release, args.sha256, record),
        executor=executor,
        instances=instances,
        timeouts=Timeouts(
            command=args.command_timeout,
            drain=args.drain_timeout,
            install=args.install_timeout,
            restart=args.restart_timeout,
            # A rollback runs no release command (docs/release-command.md).
            release_command=getattr(args, "release_command_timeout", Timeouts.release_command),
        ),
        verify_options=checks_from(args),
        store=store,
        live=live,
        identity_flags=identity_flags(location),
        out=out,
        drain=drain,
        poll_interval=args.poll_interval,
    )
    with scaling_held(autoscaling, location.project, location.stack, out, args.command):
        rollout.run()
    return 0
