"""What the instances answer to the tool's scripts, for the moto tests: moto accepts and stores
SSM commands but never runs them, so each test states the answers here (the boto3 boundary).
The scripts themselves run for real in test_local_executor.py and test_e2e_verify.py."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

from config import load_settings
from ops.scripts import CHECK_MARK, CHECKS_BY_ROLE
from tests.conftest import prod_config_values
from userdata.layout import GUNICORN_GRACE_SECONDS
from userdata.render import GUNICORN_UNIT, worker_unit

Answer = tuple[str, int, str, str]


def check_lines(role: str, failing: dict[str, str] | None = None) -> str:
    failing = failing or {}
    return "".join(
        f"{CHECK_MARK}\t{name}\t{'FAIL' if name in failing else 'ok'}\t12\t{failing.get(name, 'fine')}\n"
        for name in CHECKS_BY_ROLE[role]
    )


@functools.cache  # the prod stack file does not change during a run
def stop_timeouts(role: str) -> str:
    """`UNIT SECONDS` as the prod stack's rendered units on an instance of this role have them."""
    settings = load_settings(prod_config_values(), stack="prod", region="eu-west-1")
    if role == "web":
        return f"{GUNICORN_UNIT} {settings.web.gunicorn_timeout + GUNICORN_GRACE_SECONDS}\n"
    return "".join(f"{worker_unit(q.name)} {settings.worker.stop_timeout(q)}\n" for q in settings.worker.queues)


@dataclass
class FakeInstances:
    """Answers like healthy instances, each on `release`; `failures` maps (purpose, instance id
    or "*") to the answer that replaces the healthy one, or to the error boto3 raises instead.
    `busy` is how many in-flight queries report a running task before the queues are empty."""

    roles: dict[str, str]  # instance id -> role
    release: str = "r1"
    failures: dict[tuple[str, str], Answer | Exception] = field(default_factory=dict)
    busy: int = 0
    releases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.releases = {instance: self.release for instance in self.roles}

    def __call__(self, instance: str, purpose: str, script: str) -> Answer:
        for key in ((purpose, instance), (purpose, "*")):
            if isinstance(self.failures.get(key), Exception):
                raise self.failures[key]  # what boto3 raises for an AWS-side refusal
            if key in self.failures:
                return self.failures[key]
        if purpose == "refresh secrets":
            return "Success", 0, "secrets fetched again; restarted: ...\n", ""
        if purpose == "refresh database password":
            return "Success", 0, "password file rewritten from the secret's current version\n", ""
        if purpose == "check token":
            return "Success", 0, "2 units use the token in Parameter Store: ...\n", ""
        if purpose == "read stop timeouts":
            return "Success", 0, stop_timeouts(self.roles[instance]), ""
        if purpose == "read current release":
            return "Success", 0, self.releases[instance] + "\n", ""
        if purpose.startswith("activate "):
            self.releases[instance] = purpose.removeprefix("activate ")
            return "Success", 0, f"{self.releases[instance]} is active; units restarted\n", ""
        if purpose.startswith("release command "):
            release = purpose.removeprefix("release command ")
            return "Success", 0, f"app-release-command: release {release}: the command exited 0 after 3 s\n", ""
        if purpose.startswith("install "):
            return "Success", 0, f"app-release: installed {purpose.removeprefix('install ')}\n", ""
        if purpose in ("beat pause", "beat resume"):
            state = "inactive" if purpose == "beat pause" else "active"
            return "Success", 0, f"celery-beat.service: {state}\n", ""
        if purpose == "tasks in flight":
            return "Success", 0, self._in_flight(), ""
        match = re.fullmatch(r"verify (web|worker)", purpose)
        if match:
            return "Success", 0, check_lines(match.group(1)), ""
        raise AssertionError(f"unexpected command {purpose!r} to {instance}")

    def _in_flight(self) -> str:
        active: dict[str, list] = {"default@ip-10-0-1-5": []}
        if self.busy > 0:
            self.busy -= 1
            active["default@ip-10-0-1-5"] = [{"id": "6f1c", "name": "myapp.tasks.generate_report"}]
        return f"active {json.dumps(active)}\nreserved {json.dumps({'long@ip-10-0-1-5': []})}\n"
