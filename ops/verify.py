"""Post-deploy verification: one verify script per instance, results as table rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ops.executor import CommandResult, Executor
from ops.inventory import Instance
from ops.scripts import CHECK_MARK, CHECKS_BY_ROLE, verify_script

# Registered in every Celery app (celery/app/builtins.py) and does nothing: the check needs no
# task of the user's own. The healthcheck contract is in docs/django-settings.md.
DEFAULT_HEALTHCHECK_TASK = "celery.accumulate"


@dataclass(frozen=True)
class VerifyOptions:
    healthcheck_task: str = DEFAULT_HEALTHCHECK_TASK
    check_timeout: int = 20  # each network check inside the script (redis-cli, celery, result wait)
    command_timeout: int = 120  # the whole script on one instance


@dataclass(frozen=True)
class CheckRow:
    instance: Instance
    check: str
    ok: bool
    seconds: float
    detail: str


def parse_check_lines(instance: Instance, result: CommandResult) -> list[CheckRow]:
    """The script's result lines; every check of the role that printed none (the script was
    killed, timed out, never ran) is a failure carrying the command's status."""
    rows: dict[str, CheckRow] = {}
    for line in result.stdout.splitlines():
        fields = line.split("\t", 4)
        if len(fields) == 5 and fields[0] == CHECK_MARK:
            _, name, outcome, millis, detail = fields
            rows[name] = CheckRow(instance, name, outcome == "ok", int(millis) / 1000, detail)
    missing = [name for name in CHECKS_BY_ROLE[instance.role] if name not in rows]
    for name in missing:
        rows[name] = CheckRow(instance, name, False, 0.0, f"no result: {result.summary()}")
    return [rows[name] for name in CHECKS_BY_ROLE[instance.role]]


def verify_instance(
    executor: Executor, instance: Instance, options: VerifyOptions, beat_running: bool
) -> list[CheckRow]:
    script = verify_script(
        instance.role,
        expect_beat=instance.beat and beat_running,
        healthcheck_task=options.healthcheck_task,
        check_timeout=options.check_timeout,
    )
    return parse_check_lines(
        instance, executor.run(instance, f"verify {instance.role}", script, options.command_timeout)
    )


def verify_all(
    executor: Executor,
    instances: list[Instance],
    options: VerifyOptions,
    beat_running: bool,
    report: Callable[[CheckRow], None],
) -> list[CheckRow]:
    rows: list[CheckRow] = []
    for instance in instances:
        for row in verify_instance(executor, instance, options, beat_running):
            report(row)
            rows.append(row)
    return rows


TABLE_HEADER = ("instance", "role", "check", "result", "time", "detail")


def table_row(row: CheckRow) -> str:
    cells = (
        row.instance.label,
        row.instance.role + (" +beat" if row.instance.beat else ""),
        row.check,
        "ok" if row.ok else "FAIL",
        f"{row.seconds:.2f}s",
        row.detail,
    )
    return format_cells(cells)


def format_cells(cells: tuple[str, ...]) -> str:
    widths = (40, 12, 12, 6, 8)
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + "  " + cells[-1]
