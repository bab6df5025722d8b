"""Requests failed while `deploy`, `rollback` and `rotate-token` restart the web instances, with
the drain (each web instance out of the load balancer while its gunicorn restarts) and without
it (restarted in place, as before issue 21), side by side in one run.

The setup is tests/ops/test_web_drain.py's: the ops tool against moto in this process, two web
instances that are real gunicorn processes, and the load-balancer stand-in (with AWS's Standby
and draining behaviour moto lacks, tests/ops/load_balancer.py) under two clients sending back to
back. Prints, per mode, requests sent, failed and why; exits 0.

    .venv/bin/python bench/web_restarts.py [--quick]

One run per mode is already its smallest setting: --quick (what CI runs, tests/benches.py) changes
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from offline_render.program import StackRender
from ops.cli import main
from ops.executor import SsmExecutor
from ops.inventory import Instance
from ops.web_drain import WebDrain
from tests.conftest import rendered
from tests.ops.conftest import REGION, ScriptedSsm, aws_client, launch
from tests.ops.fake_instances import FakeInstances
from tests.ops.load_balancer import APP, WEB_INSTANCES, Gunicorn, LoadBalancer, Restarting, attach_web_group, model_aws

COMMANDS = (["deploy", "--release", "r2"], ["rollback"], ["rotate-token"])
ROLLOUTS = ("deploy", "rollback")


@contextlib.contextmanager
def restart_in_place(self: WebDrain, instance: Instance) -> Iterator[None]:
    yield


def one_run(prod: StackRender, drained: bool, base: Path) -> tuple[Counter[str], list[int]]:
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        (parameter,) = [
            r.inputs["name"] for r in prod.of_type("aws:ssm/parameter:Parameter") if r.inputs["type"] == "String"
        ]
        aws_client("ssm").put_parameter(Name=parameter, Value="r1", Type="String")
        stack = {instance.tags["Name"]: launch(instance.tags) for instance in prod.instances}
        _, target_group = attach_web_group(aws_client("ec2"), aws_client("autoscaling"), aws_client("elbv2"), stack)
        (base / "app.py").write_text(APP)
        backends = {stack[name]: Gunicorn(base) for name in WEB_INSTANCES}
        balancer = LoadBalancer(aws_client("elbv2"), target_group, backends)
        if not drained:
            patch.setattr(WebDrain, "around_restart", restart_in_place)
        roles = {iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}
        answers = Restarting(FakeInstances(roles), balancer)
        codes = []
        try:
            for backend in backends.values():
                backend.start()
            with model_aws(balancer, patch), balancer.load(), contextlib.redirect_stdout(io.StringIO()):
                for command in COMMANDS:
                    argv = [command[0], "--stack", "prod", "--poll-interval", "0.01", *command[1:]]
                    argv += ["--state-dir", str(base / "state")] if command[0] in ROLLOUTS else []
                    executor = SsmExecutor(ScriptedSsm(aws_client("ssm"), answers), poll_interval=0.01)
                    with contextlib.redirect_stderr(io.StringIO()):
                        codes.append(main(argv, executor=executor))
        finally:
            for backend in backends.values():
                backend.stop()
        return balancer.outcomes, codes


def main_bench(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/web_restarts.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest settings, once: the same run here")
    parser.parse_args(argv)
    os.environ |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }
    prod = rendered("prod")
    print("deploy + rollback + rotate-token, 2 web instances (real gunicorn), 2 clients back to back")
    for drained in (True, False):
        with tempfile.TemporaryDirectory(prefix="web-restarts-") as base:
            outcomes, codes = one_run(prod, drained, Path(base))
        sent = sum(outcomes.values())
        failed = sent - outcomes["200"]
        why = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()) if outcome != "200")
        mode = "drained (Standby)" if drained else "in place (no drain)"
        share = 100 * failed / sent if sent else 0.0
        print(
            f"  {mode:<20} commands exit {codes}: {sent} requests, {failed} failed ({share:.1f} %)"
            + (f": {why}" if why else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
