"""Sends the healthcheck task (argv[1]) and waits up to argv[2] seconds for a worker to accept it.
Needs no result backend: a worker accepting the task shows in the total its inspect stats report."""

import os
import sys
import time

from celery.app.utils import find_app

app = find_app(os.environ["CELERY_APP"])
name, limit = sys.argv[1], float(sys.argv[2])


def accepted() -> int:
    replies = app.control.inspect(timeout=1.0).stats() or {}
    if not replies:
        raise SystemExit("no worker answered inspect stats")
    return sum(int(reply.get("total", {}).get(name, 0)) for reply in replies.values())


before = accepted()
started = time.monotonic()
app.send_task(name)
while accepted() <= before:
    if time.monotonic() - started > limit:
        raise SystemExit(f"no worker accepted {name} within {limit:g} s")
print(f"{name} accepted by a worker after {time.monotonic() - started:.1f} s")
