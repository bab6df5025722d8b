"""vm-test: stands in for the AWS endpoints an instance talks to, on https://127.0.0.1:4443, and
for the instance metadata service on http://169.254.169.254 (the address is on the guest's
loopback: the program's units reach it where they would on EC2, and IPAddressDeny= applies).

  Parameter Store  POST with X-Amz-Target AmazonSSM.GetParameter / GetParameters (JSON 1.1)
  S3               GET / HEAD /<bucket>/<key>, with Range (boto3's download_file makes ranged
                   GETs for objects over 8 MB), path-style as boto3 addresses an IP endpoint
  Auto Scaling     POST Action=DescribeAutoScalingInstances (this instance in the boot's group),
                   Action=CompleteLifecycleAction and SetInstanceHealth (recorded) (query API)
  IMDSv2           PUT /latest/api/token; GET (with the token) instance-id, the role's
                   credentials, autoscaling/target-lifecycle-state: `InService` until the probe
                   writes another state to /run/vm-test/target-lifecycle-state

Parameters come from the image (the secrets, the file named on the command line) and from the
boot's test-data drive (the live release, the app's own secret parameter); objects are the
files under /var/lib/vm-test/s3/<bucket>/<key>; the instance id and Auto Scaling group from
the test-data drive. TLS with the image's test CA, which the guest trusts system-wide as an
instance trusts Amazon's. Socket-activated (aws-standin.socket), so a client that starts before
this process is ready waits in the backlog instead of failing. moto would do, but importing it
takes tens of seconds under TCG. Signatures are not checked: only the guest reaches it. Every
request is appended to /run/vm-test/aws-requests.jsonl for the probe; an IMDS request with the
unit whose cgroup the calling process is in.
"""

import json
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vmtest_data import boot_data

OBJECTS = Path("/var/lib/vm-test/s3")
REQUEST_LOG = Path("/run/vm-test/aws-requests.jsonl")
TLS_CERT, TLS_KEY = "/etc/vm-test/tls/aws.pem", "/etc/vm-test/tls/aws.key"
# A parameter is {"type": "String" | "SecureString", "value": ...}.
PARAMETERS: dict[str, dict[str, str]] = {}
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
AWS_PORT, IMDS_ADDRESS, IMDS_PORT = 4443, "169.254.169.254", 80
LIFECYCLE_STATE = Path("/run/vm-test/target-lifecycle-state")
ROLE = "vm-test-instance-role"
IMDS_TOKENS: set[str] = set()
# The boot's instance id and Auto Scaling group (test-data drive).
INSTANCE: dict[str, str] = {}
AUTOSCALING_XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


def parameter(name: str) -> dict[str, object]:
    return {
        "Name": name,
        "Type": PARAMETERS[name]["type"],
        "Value": PARAMETERS[name]["value"],
        "Version": 1,
        "ARN": f"arn:aws:ssm:vm-test:123456789012:parameter{name}",
        "DataType": "text",
    }


def ssm_answer(action: str, body: dict) -> tuple[int, dict]:
    if action == "GetParameters":
        names = body.get("Names", [])
        return 200, {
            "Parameters": [parameter(n) for n in names if n in PARAMETERS],
            "InvalidParameters": [n for n in names if n not in PARAMETERS],
        }
    if action == "GetParameter":
        name = body.get("Name", "")
        if name not in PARAMETERS:
            return 400, {"__type": "ParameterNotFound", "message": f"{name} not found"}
        return 200, {"Parameter": parameter(name)}
    return 400, {"__type": "InvalidAction", "message": f"{action} is not supported by the stand-in"}


def autoscaling_answer(form: dict[str, str]) -> tuple[int, str]:
    action = form.get("Action", "")
    if action == "DescribeAutoScalingInstances":
        asked = [value for key, value in form.items() if key.startswith("InstanceIds.member.")]
        members = "".join(
            f"<member><InstanceId>{instance}</InstanceId>"
            f"<AutoScalingGroupName>{INSTANCE['autoscaling_group']}</AutoScalingGroupName>"
            "<AvailabilityZone>vm-test-1a</AvailabilityZone><LifecycleState>Terminating:Wait</LifecycleState>"
            "<HealthStatus>HEALTHY</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
            for instance in asked
            if instance == INSTANCE["instance_id"]
        )
        result = f"<AutoScalingInstances>{members}</AutoScalingInstances>"
    elif action in ("CompleteLifecycleAction", "SetInstanceHealth"):
        result = ""
    else:
        return (
            400,
            f"<ErrorResponse><Error><Code>InvalidAction</Code><Message>{action}</Message></Error></ErrorResponse>",
        )
    return 200, (
        f'<{action}Response xmlns="{AUTOSCALING_XMLNS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>vm-test</RequestId></ResponseMetadata></{action}Response>"
    )


def log_request(entry: dict) -> None:
    with REQUEST_LOG.open("a") as log:
        log.write(json.dumps({**entry, "monotonic": time.monotonic()}) + "\n")


def proc_net_address(host: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the 32-bit address in host (little-endian)
    order, then the port, both hex."""
    packed = socket.inet_aton(host)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def calling_unit(client: tuple[str, int]) -> str | None:
    """The systemd unit whose cgroup holds the process at the other end of this connection
    (while it waits for our answer): its socket in /proc/net/tcp, then the process holding it."""
    local, remote = proc_net_address(*client), proc_net_address(IMDS_ADDRESS, IMDS_PORT)
    inode = next(
        (
            fields[9]
            for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
            if fields[1] == local and fields[2] == remote
        ),
        None,
    )
    if inode is None:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in fd_dir.iterdir()):
                cgroup = (fd_dir.parent / "cgroup").read_text().strip().rpartition("::")[2]
                return cgroup.rpartition("/")[2]
        except OSError:  # the process ended while we looked
            continue
    return None


def metadata(path: str) -> str | None:
    credentials = "/latest/meta-data/iam/security-credentials/"
    if path == credentials:
        return ROLE
    if path == credentials + ROLE:
        now = datetime.now(UTC)
        return json.dumps(
            {
                "Code": "Success",
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAVMTEST",
                "SecretAccessKey": "vm-test",
                "Token": "vm-test",
                "Expiration": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    if path == "/latest/meta-data/instance-id":
        return INSTANCE["instance_id"]
    if path == "/latest/meta-data/autoscaling/target-lifecycle-state":
        return LIFECYCLE_STATE.read_text().strip() if LIFECYCLE_STATE.exists() else "InService"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects

    def reply(self, status: int, headers: dict[str, str], body: bytes = b"", send_body: bool = True) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if "X-Amz-Target" not in self.headers:  # the query API: Auto Scaling
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            status, answer = autoscaling_answer(form)
            log_request({"service": "autoscaling", "action": form.get("Action"), "params": form, "status": status})
            xml = answer.encode()
            self.reply(status, {"Content-Type": "text/xml", "Content-Length": str(len(xml))}, xml)
            return
        action = self.headers["X-Amz-Target"].rpartition(".")[2]
        body = json.loads(raw or b"{}")
        status, payload = ssm_answer(action, body)
        log_request(
            {"service": "ssm", "action": action, "names": body.get("Names") or [body.get("Name")], "status": status}
        )
        data = json.dumps(payload).encode()
        self.reply(status, {"Content-Type": "application/x-amz-json-1.1", "Content-Length": str(len(data))}, data)

    def do_HEAD(self) -> None:
        self.serve_object(send_body=False)

    def do_GET(self) -> None:
        self.serve_object(send_body=True)

    def serve_object(self, send_body: bool) -> None:
        key = self.path.split("?", 1)[0].lstrip("/")
        path = OBJECTS / key
        found = ".." not in key.split("/") and path.is_file()
        wanted = RANGE.match(self.headers.get("Range", ""))
        log_request({"service": "s3", "method": self.command, "key": key, "range": bool(wanted), "found": found})
        if not found:
            data = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
            headers = {"Content-Type": "application/xml", "Content-Length": str(len(data))}
            self.reply(404, headers, data, send_body)
            return
        size = path.stat().st_size
        first, last = 0, size - 1
        if wanted:
            first = int(wanted.group(1))
            last = min(int(wanted.group(2) or size - 1), size - 1)
        headers = {
            "Content-Length": str(last - first + 1),
            "Content-Type": "application/octet-stream",
            "ETag": f'"{size:x}-{int(path.stat().st_mtime):x}"',
            "Last-Modified": formatdate(path.stat().st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
        }
        if wanted:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        self.send_response(206 if wanted else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            with path.open("rb") as source:
                source.seek(first)
                self.wfile.write(source.read(last - first + 1))

    def log_message(self, format: str, *args: object) -> None:
        print(f"aws-standin: {format % args}")


class MetadataHandler(BaseHTTPRequestHandler):
    """IMDSv2 only, as the launch templates require (httpTokens: required)."""

    def answer(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_imds(self, status: int) -> None:
        unit = calling_unit(self.client_address)
        log_request({"service": "imds", "method": self.command, "path": self.path, "status": status, "unit": unit})

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
            self.log_imds(400)
            return self.answer(400)
        token = secrets.token_urlsafe(24)
        IMDS_TOKENS.add(token)
        self.log_imds(200)
        self.answer(200, token)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") not in IMDS_TOKENS:
            self.log_imds(401)
            return self.answer(401)
        value = metadata(self.path)
        self.log_imds(200 if value is not None else 404)
        self.answer(200, value) if value is not None else self.answer(404)

    def log_message(self, format: str, *args: object) -> None:
        print(f"aws-standin imds: {format % args}")


def listening(port: int) -> socket.socket:
    """The socket aws-standin.socket bound for `port` (systemd passes them from fd 3 on)."""
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for fd in range(3, 3 + count):
        candidate = socket.socket(fileno=fd)
        if candidate.getsockname()[1] == port:
            return candidate
        candidate.detach()
    raise SystemExit(f"aws-standin: no socket for port {port}; start it through aws-standin.socket")


def main() -> None:
    PARAMETERS.update(json.loads(Path(sys.argv[1]).read_text()))
    data = boot_data()
    PARAMETERS.update(data.get("parameters", {}))
    INSTANCE.update(instance_id=data["instance_id"], autoscaling_group=data["autoscaling_group"])
    REQUEST_LOG.parent.mkdir(parents=True, exist_ok=True)
    metadata_server = ThreadingHTTPServer((IMDS_ADDRESS, IMDS_PORT), MetadataHandler, bind_and_activate=False)
    metadata_server.socket = listening(IMDS_PORT)
    threading.Thread(target=metadata_server.serve_forever, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", AWS_PORT), Handler, bind_and_activate=False)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_CERT, TLS_KEY)
    server.socket = context.wrap_socket(listening(AWS_PORT), server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
