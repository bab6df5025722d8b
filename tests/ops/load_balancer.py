"""A stand-in for the Application Load Balancer in front of the web group, for the drain tests,
and the part of AWS's behaviour moto does not model.

What moto does (5.x): EnterStandby/ExitStandby only change the instance's lifecycle state (the
target stays registered), and every registered target is `healthy` at once, whatever answers
on its port. What AWS does, and what `model_aws` adds to moto here:
- EnterStandby deregisters the instance from the group's target groups; the target is
  `draining` while requests to it are in flight (up to the deregistration delay), then `unused`.
- ExitStandby registers it again; the target is `initial` until its health check passes
  (here: the first successful GET on its port), then `healthy`.
The load balancer routes a new request only to targets moto's DescribeTargetHealth says are
`healthy`, as the ALB does when at least one target is healthy. Its health checks need 3 failures
15 s apart to mark a target unhealthy (components/front_door.py), longer than a restart, so a
registered target being restarted stays `healthy` and keeps receiving requests: what the drain
step exists to prevent.

Web instances are real gunicorn processes (one per instance, a WSGI app that takes 20 ms per
request) on loopback; restarting an instance's units is a real gunicorn graceful stop (SIGTERM:
in-flight requests finish, the socket closes) and start.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e_harness.ports import free_port

from tests.ops.fake_instances import Answer, FakeInstances

if TYPE_CHECKING:
    from moto.autoscaling.models import AutoScalingBackend
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

# moto's EC2 models (which its Auto Scaling and ELBv2 models import) take ~1.4 s to import: the
# regions and every region's instance-type offerings. Imported where used, an xdist worker that
# collects this module but runs no test of tests/ops (one group, tests/ops/conftest.py) skips them.

GROUP = "prod-web-abc123"
WEB_INSTANCES = ("prod-web-0", "prod-web-1")

APP = """\
import time
def app(environ, start_response):
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def attach_web_group(ec2: Any, autoscaling: Any, elbv2: Any, stack: dict[str, str]) -> tuple[Any, str]:
    """prod's web group with the two web instances (stack: Name tag -> instance id), attached to
    a target group as the program makes it (health check every 15 s, 2 to be healthy), at its
    minimum size. Returns the Auto Scaling client and the target group's ARN."""
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    target_group = elbv2.create_target_group(
        Name="prod-web",
        Protocol="HTTP",
        Port=8000,
        VpcId=vpc,
        TargetType="instance",
        HealthCheckIntervalSeconds=15,
        HealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=target_group, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]
    )
    template = ec2.create_launch_template(
        LaunchTemplateName="prod-web", LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=0,
        MaxSize=6,
        DesiredCapacity=0,
        AvailabilityZones=["eu-west-1a"],
        TargetGroupARNs=[target_group],
        Tags=[
            {"Key": "Stack", "Value": "prod", "PropagateAtLaunch": True},
            {"Key": "Project", "Value": "django-stack", "PropagateAtLaunch": True},
        ],
    )
    autoscaling.attach_instances(InstanceIds=[stack[name] for name in WEB_INSTANCES], AutoScalingGroupName=GROUP)
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=2)
    return autoscaling, target_group


@dataclass
class Gunicorn:
    """One web instance's gunicorn, restarted as systemd restarts gunicorn.service."""

    app_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.spawn()
        self.wait_answering()

    def spawn(self) -> None:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        # gunicorn >= 27 opens a control socket in $XDG_RUNTIME_DIR, else in ~/.gunicorn: one of
        # its own, as gunicorn.service gives it, so none is shared or left in the home directory.
        runtime = self.app_dir / f"runtime-{self.port}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(gunicorn),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--chdir",
                str(self.app_dir),
                "app:app",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )

    def wait_answering(self) -> None:
        deadline = time.monotonic() + 30
        while not self.answers():
            assert time.monotonic() < deadline, f"gunicorn on {self.port} did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.signal_stop()
        self.wait_stopped()

    def signal_stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # graceful: requests in flight finish

    def wait_stopped(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=30)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/health")
            ok = connection.getresponse().status == 200
            connection.close()
            return ok
        except OSError:
            return False


@dataclass
class LoadBalancer:
    """Routes each request to a target moto says is healthy, round robin; counts the outcomes."""

    region: str
    target_group_arn: str
    backends: dict[str, Gunicorn]  # instance id -> its gunicorn
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: Counter[str] = field(default_factory=Counter)
    initial: set[str] = field(default_factory=set)  # registered again, health check not yet passed
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    turn: int = 0

    def healthy(self) -> list[str]:
        """What an ALB knows inside: moto's own target health, asked in place. (As a
        DescribeTargetHealth call through boto3, each request's routing cost more CPU than the
        request, hundreds a test; the tool under test still asks through the API.)"""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.elbv2.models import elbv2_backends

        elbv2 = elbv2_backends[DEFAULT_ACCOUNT_ID][self.region]
        described = elbv2.describe_target_health(self.target_group_arn, [])
        return sorted(health.instance_id for health in described if health.status == "healthy")

    def request(self) -> None:
        with self.lock:  # choosing a target and counting it in flight, atomic with deregistration
            targets = self.healthy()
            if not targets:
                self.outcomes["503 no healthy target"] += 1
                return
            self.turn += 1
            target = targets[self.turn % len(targets)]
            self.in_flight[target] += 1
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.backends[target].port, timeout=5)
            connection.request("GET", "/")
            status = connection.getresponse().status
            connection.close()
            outcome = "200" if status == 200 else f"502 status {status}"
        except OSError as error:
            outcome = f"502 {type(error).__name__}"
        finally:
            with self.lock:
                self.in_flight[target] -= 1
        self.outcomes[outcome] += 1
        if outcome != "200":
            self.failures.append(f"{target}: {outcome}")

    @contextmanager
    def load(self, clients: int = 2) -> Iterator[None]:
        """`clients` threads sending requests back to back for as long as the block runs."""
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                self.request()

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)

    # --- AWS's behaviour, added to moto -----------------------------------------------------------

    def health_for(self, target_group: FakeTargetGroup, target: dict[str, Any], original: Any) -> FakeHealthStatus:
        from moto.elbv2.models import FakeHealthStatus

        target_id = target["Id"]
        port = target_group.port
        if target_id in target_group.targets:
            if target_id in self.initial:
                if not self.backends[target_id].answers():
                    return FakeHealthStatus(target_id, port, port, "initial", "Elb.RegistrationInProgress")
                self.initial.discard(target_id)
            return FakeHealthStatus(target_id, port, port, "healthy")
        if target_id in target_group.deregistered_targets and self.in_flight[target_id] > 0:
            return FakeHealthStatus(target_id, port, port, "draining", "Target.DeregistrationInProgress")
        return original(target_group, target)


# What restarts a web instance's units: a release switch and a token refresh.
RESTARTS = ("activate r1", "activate r2", "refresh secrets")


class Restarting:
    """The fake instances, except that a web instance's restart restarts its real gunicorn."""

    def __init__(self, answers: FakeInstances, balancer: LoadBalancer) -> None:
        self.answers, self.balancer = answers, balancer

    def __call__(self, instance: str, purpose: str, script: str) -> Answer:
        answer = self.answers(instance, purpose, script)
        if purpose in RESTARTS and instance in self.balancer.backends and answer[0] == "Success":
            self.balancer.backends[instance].restart()
        return answer


@contextmanager
def model_aws(balancer: LoadBalancer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Standby takes the instance out of the group's target groups and ExitStandby puts it back
    (initial until healthy), and draining lasts while requests are in flight: what AWS does."""
    from moto.autoscaling.models import AutoScalingBackend
    from moto.elbv2.models import FakeTargetGroup

    enter, exit_, health = (
        AutoScalingBackend.enter_standby_instances,
        AutoScalingBackend.exit_standby_instances,
        FakeTargetGroup.health_for,
    )

    def target_groups(backend: AutoScalingBackend, group_name: str) -> list[FakeTargetGroup]:
        arns = backend.autoscaling_groups[group_name].target_group_arns
        return [backend.elbv2_backend.target_groups[arn] for arn in arns]

    def enter_standby(backend: AutoScalingBackend, group_name: str, instance_ids: list[str], decrement: bool) -> Any:
        activities = enter(backend, group_name, instance_ids, decrement)
        with balancer.lock:
            for target_group in target_groups(backend, group_name):
                target_group.deregister([{"Id": i} for i in instance_ids if i in target_group.targets])
        return activities

    def exit_standby(backend: AutoScalingBackend, group_name: str, instance_ids: list[str]) -> Any:
        with balancer.lock:
            balancer.initial.update(instance_ids)  # before moto registers them again
            activities = exit_(backend, group_name, instance_ids)
            for target_group in target_groups(backend, group_name):
                target_group.register([{"Id": i} for i in instance_ids])
        return activities

    monkeypatch.setattr(AutoScalingBackend, "enter_standby_instances", enter_standby)
    monkeypatch.setattr(AutoScalingBackend, "exit_standby_instances", exit_standby)
    monkeypatch.setattr(
        FakeTargetGroup,
        "health_for",
        lambda group, target, ec2: balancer.health_for(group, target, lambda g, t: health(g, t, ec2)),
    )
    yield
