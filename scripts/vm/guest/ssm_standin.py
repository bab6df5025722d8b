"""vm-test: a tiny SSM Parameter Store stand-in (GetParameter, GetParameters) over HTTP.

A moto server would do, but importing moto takes tens of seconds under TCG; this answers the
two calls app-fetch-secrets makes, from a JSON file {name: value}, in the AWS JSON 1.1 protocol.
Signatures are not checked: the guest has no network and only loopback reaches it.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PARAMETERS: dict[str, str] = {}


def parameter(name: str) -> dict[str, object]:
    return {
        "Name": name,
        "Type": "SecureString",
        "Value": PARAMETERS[name],
        "Version": 1,
        "ARN": f"arn:aws:ssm:vm-test:123456789012:parameter{name}",
        "DataType": "text",
    }


def answer(action: str, body: dict) -> tuple[int, dict]:
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


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        length = int(self.headers.get("Content-Length", 0))
        status, payload = answer(action, json.loads(self.rfile.read(length) or b"{}"))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"ssm-standin: {self.headers.get('X-Amz-Target', '?')} -> {args[1] if len(args) > 1 else ''}")


if __name__ == "__main__":
    with open(sys.argv[1]) as source:
        PARAMETERS.update(json.load(source))
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
