"""vm-test: stands in for the AWS endpoints a first boot talks to, on https://127.0.0.1:4443.

  Parameter Store  POST with X-Amz-Target AmazonSSM.GetParameter / GetParameters (JSON 1.1)
  S3               GET / HEAD /<bucket>/<key>, with Range (boto3's download_file makes ranged
                   GETs for objects over 8 MB), path-style as boto3 addresses an IP endpoint

Parameters come from the image (the secrets, the file named on the command line) and from the
boot's test-data drive (the live release, seeded by the host from its Parameter Store); objects are the
files under /var/lib/vm-test/s3/<bucket>/<key>. TLS with the image's test CA, which the guest
trusts system-wide as an instance trusts Amazon's. Socket-activated (aws-standin.socket), so a
client that starts before this process is ready waits in the backlog instead of failing.
moto would do, but importing it takes tens of seconds under TCG. Signatures are not checked:
only loopback reaches it. Every request is appended to /run/vm-test/aws-requests.jsonl for the
probe.
"""

import json
import os
import re
import socket
import ssl
import sys
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


def log_request(entry: dict) -> None:
    with REQUEST_LOG.open("a") as log:
        log.write(json.dumps(entry) + "\n")


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
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
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


def main() -> None:
    PARAMETERS.update(json.loads(Path(sys.argv[1]).read_text()))
    PARAMETERS.update(boot_data().get("parameters", {}))
    REQUEST_LOG.parent.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 4443), Handler, bind_and_activate=False)
    # systemd passes the listening socket as fd 3 (LISTEN_FDS=1); it was bound before we started.
    if os.environ.get("LISTEN_FDS") != "1":
        raise SystemExit("aws-standin: start it through aws-standin.socket")
    server.socket = socket.socket(fileno=3)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_CERT, TLS_KEY)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
