"""The termination agent (userdata/files/app-warm-stop) run as the instance runs it: Debian's
/usr/bin/python3 and python3-boto3, against moto's Auto Scaling on loopback with a worker group,
its instance and the stack's termination hook, and an IMDSv2 stand-in that reports the
instance's target lifecycle state. Two stand-ins where the real part cannot run here: moto does
not implement CompleteLifecycleAction (a proxy in front of moto records it and passes every other
call through), and systemd (a `systemctl` on PATH that records the stop and takes 2 s to finish,
as a warm stop would)."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from userdata.layout import TERMINATION_HOOK

AGENT = Path(__file__).resolve().parents[2] / "userdata" / "files" / "app-warm-stop"
SYSTEM_PYTHON = "/usr/bin/python3"
REGION = "eu-west-1"
COMPLETED = (
    '<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
    "<CompleteLifecycleActionResult/><ResponseMetadata><RequestId>standin</RequestId></ResponseMetadata>"
    "</CompleteLifecycleActionResponse>"
)
# Records each call with a timestamp; `stop` takes as long as a warm stop of a short task.
SYSTEMCTL = """#!/bin/sh
echo "$(date +%s.%N) $*" >> "{log}"
case "$1" in
  list-units) echo "celery-worker-default.service loaded active running Celery worker"
              echo "celery-worker-long.service loaded active running Celery worker" ;;
  stop) sleep 2; echo "$(date +%s.%N) stopped" >> "{log}" ;;
esac
"""


@dataclass
class Standin:
    """IMDSv2 for one instance, and Auto Scaling's endpoint: CompleteLifecycleAction recorded,
    everything else forwarded to moto."""

    moto: str
    instance_id: str
    lifecycle_state: str = "InService"
    tokens: set[str] = field(default_factory=set)
    completed: list[tuple[float, dict[str, str]]] = field(default_factory=list)


def serve(standin: Standin) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # IMDSv2 session token
            if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                return self.reply(400, "")
            token = f"token-{len(standin.tokens)}"
            standin.tokens.add(token)
            self.reply(200, token)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") not in standin.tokens:
                return self.reply(401, "")  # IMDSv2 only, as the launch templates require
            values = {
                "/latest/meta-data/instance-id": standin.instance_id,
                "/latest/meta-data/autoscaling/target-lifecycle-state": standin.lifecycle_state,
            }
            if self.path not in values:
                return self.reply(404, "")
            self.reply(200, values[self.path])

        def do_POST(self) -> None:  # the Auto Scaling query API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("Action") == "CompleteLifecycleAction":
                standin.completed.append((time.time(), form))
                return self.reply(200, COMPLETED, "text/xml")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            forwarded = urllib.request.Request(standin.moto + self.path, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(forwarded, timeout=10) as response:
                self.reply(response.status, response.read().decode(), response.headers["Content-Type"])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def worker_group() -> Iterator[Standin]:
    """moto with a worker group of one instance and the termination hook, and the stand-in."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    credentials = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ec2 = boto3.client("ec2", endpoint_url=url, **credentials)
    autoscaling = boto3.client("autoscaling", endpoint_url=url, **credentials)
    template = ec2.create_launch_template(
        LaunchTemplateName="prod-worker", LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="prod-worker-abc123",
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
    )
    autoscaling.put_lifecycle_hook(
        AutoScalingGroupName="prod-worker-abc123",
        LifecycleHookName=TERMINATION_HOOK,
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=1920,
        DefaultResult="CONTINUE",
    )
    (instance,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    try:
        yield Standin(url, instance["InstanceId"])
    finally:
        moto.stop()


def start_agent(standin: Standin, server_url: str, bin_dir: Path) -> subprocess.Popen[str]:
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AWS_REGION": REGION,
        "LIFECYCLE_HOOK_NAME": TERMINATION_HOOK,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": server_url,
        "AWS_ENDPOINT_URL_AUTOSCALING": server_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return subprocess.Popen(
        [SYSTEM_PYTHON, str(AGENT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_terminating_worker_stops_its_celery_units_warm_then_completes_the_action(worker_group, tmp_path):
    log = tmp_path / "systemctl.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(SYSTEMCTL.format(log=log))
    systemctl.chmod(0o755)
    server = serve(worker_group)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    agent = start_agent(worker_group, url, bin_dir)
    try:
        time.sleep(7)  # more than one poll while InService (IMDSv2 only: the stand-in refuses a GET without a token)
        assert agent.poll() is None and not log.exists() and worker_group.completed == []
        worker_group.lifecycle_state = "Terminated"  # Auto Scaling put it in Terminating:Wait
        output, _ = agent.communicate(timeout=60)
    finally:
        agent.kill()
        server.shutdown()
    assert agent.returncode == 0, output
    calls = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [call for _, call in calls] == [
        "list-units --plain --no-legend --type=service celery-worker-*.service celery-beat.service",
        "stop celery-worker-default.service celery-worker-long.service",
        "stopped",
    ]
    ((completed_at, action),) = worker_group.completed
    assert completed_at >= float(calls[-1][0])  # only once the units had stopped
    assert {k: action[k] for k in ("LifecycleHookName", "AutoScalingGroupName", "InstanceId")} == {
        "LifecycleHookName": TERMINATION_HOOK,
        "AutoScalingGroupName": "prod-worker-abc123",
        "InstanceId": worker_group.instance_id,
    }
    assert action["LifecycleActionResult"] == "CONTINUE"
    assert f"completed {TERMINATION_HOOK} for {worker_group.instance_id}" in output
