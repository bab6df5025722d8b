"""`python -m ops exec`: a one-off command (`manage.py shell`, `manage.py createsuperuser`...)
as the app user in the current release of one instance, with the app units' env files, over SSM
(Kamal's `app exec`, Copilot's `svc exec`). Its output and exit code come back as the
instance's; SSM keeps the first 24,000 characters of each stream."""

from __future__ import annotations

import sys

from ops.errors import UsageError
from ops.executor import Executor
from ops.inventory import Instance, by_role
from ops.scripts import exec_script


def pick_instance(instances: list[Instance], role: str | None, instance_id: str | None) -> Instance:
    """--instance if given (it must be one of the stack's running instances), else the first
    of --role (web first when no role is given)."""
    candidates = by_role(instances, role) if role else instances
    if instance_id:
        for instance in candidates:
            if instance.instance_id == instance_id:
                return instance
        running = ", ".join(i.label for i in candidates) or "none"
        kind = f"{role} instance" if role else "instance of the stack"
        raise UsageError(f"--instance: {instance_id} is not a running {kind} (running: {running})")
    if not candidates:
        raise UsageError(f"--role: the stack has no running {role} instance")
    return candidates[0]


def run_one_off(executor: Executor, instance: Instance, argv: list[str], timeout: int) -> int:
    """Prints the command's stdout and stderr as they came back, then `exit N on INSTANCE` on
    stderr; returns N (1 when SSM could not run it or gave up waiting)."""
    print(f"exec on {instance.label}: {' '.join(argv)}", file=sys.stderr, flush=True)
    result = executor.run(instance, "exec", exec_script(argv), timeout)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if result.status in ("Success", "Failed") and 0 <= result.exit_code <= 255:
        print(f"exit {result.exit_code} on {instance.label}", file=sys.stderr)
        return result.exit_code
    print(f"not run to the end on {instance.label}: {result.status} (exit {result.exit_code})", file=sys.stderr)
    return 1
