"""vm-test: the Django side of the probe, run as the app user with the units' environment files
(systemd-run -p User=app -p EnvironmentFile=...), from the active release's src/.

  app_side.py roundtrip            enqueue healthcheck_task from Django and wait for its result
  app_side.py enqueue KEY SECONDS  enqueue record_execution(KEY, SECONDS) and return at once
"""

import json
import os
import sys
import time

import django

# The project is the working directory (the release's src/), as for the units' own processes.
sys.path.insert(0, os.getcwd())
django.setup()

from myapp.tasks import healthcheck_task, record_execution  # noqa: E402 - needs django.setup()
from proj.celery import app  # noqa: E402,F401 - configures Celery from the Django settings


def main() -> None:
    command = sys.argv[1]
    started = time.monotonic()
    if command == "roundtrip":
        result = healthcheck_task.delay()
        value = result.get(timeout=120)
        report = {"task_id": result.id, "result": value, "seconds": round(time.monotonic() - started, 2)}
    elif command == "enqueue":
        result = record_execution.apply_async(args=[sys.argv[2], float(sys.argv[3])])
        report = {"task_id": result.id}
    else:
        raise SystemExit(f"app_side: unknown command {command!r}; allowed: roundtrip, enqueue")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
