"""Auto Scaling around a worker, for the termination agent's tests: moto's Auto Scaling with a
worker group of one instance and the stack's termination hook, and one loopback stand-in that is
the instance's IMDSv2 (its target lifecycle state) and Auto Scaling's endpoint (moto does not
implement CompleteLifecycleAction: that call is recorded here, every other is passed to moto)."""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto.server import ThreadedMotoServer

from userdata.layout import TERMINATION_HOOK

REGION = "eu-west-1"
GROUP = "prod-worker-abc123"
COMPLETED = (
    '<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
    "<CompleteLifecycleActionResult/><ResponseMetadata><RequestId>standin</RequestId></ResponseMetadata>"
    "</CompleteLifecycleActionResponse>"
)


@dataclass
class Standin:
    """IMDSv2 for one instance, and Auto Scaling's endpoint: CompleteLifecycleAction recorded,
    everything else forwarded to moto."""

    moto: str
    instance_id: str
    lifecycle_state: str = "InService"
    tokens: set[str] = field(default_factory=set)
    completed: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    url: str = ""


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


@contextmanager
def worker_group() -> Iterator[Standin]:
    """moto with a worker group of one instance and the termination hook, and the stand-in in
    front of it (its URL is both the IMDS and the Auto Scaling endpoint)."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    # In-process moto servers share one backend: start from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()
    credentials = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ec2 = boto3.client("ec2", endpoint_url=url, **credentials)
    autoscaling = boto3.client("autoscaling", endpoint_url=url, **credentials)
    template = ec2.create_launch_template(
        LaunchTemplateName="prod-worker", LaunchTemplateData={"ImageId": "ami-0123456789abcdef0"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
    )
    autoscaling.put_lifecycle_hook(
        AutoScalingGroupName=GROUP,
        LifecycleHookName=TERMINATION_HOOK,
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=1920,
        DefaultResult="CONTINUE",
    )
    (instance,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    standin = Standin(url, instance["InstanceId"])
    server = serve(standin)
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield standin
    finally:
        server.shutdown()
        moto.stop()
