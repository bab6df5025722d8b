"""A stand-in for the ALB in front of several web instances: round robin over the targets, the
client's request forwarded with the headers the ALB adds (X-Forwarded-For, X-Forwarded-Proto).

A target that refuses the connection (gunicorn restarting) is skipped for that request, as the
ALB stops routing to a target that is draining or failed its health check; the switch itself is
not what these tests measure."""

from __future__ import annotations

import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class RoundRobinBalancer:
    def __init__(self, targets: list[tuple[str, int]]) -> None:
        self.targets = targets
        self.turns = itertools.cycle(range(len(targets)))
        self.lock = threading.Lock()
        self.routed: list[tuple[str, int]] = []  # (path, index of the target that answered)
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status, headers, body = balancer.forward(self.path, dict(self.headers), self.client_address[0])
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, path: str, headers: dict[str, str], client: str) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        headers |= {"X-Forwarded-For": client, "X-Forwarded-Proto": "https", "Connection": "close"}
        for _ in self.targets:
            with self.lock:
                index = next(self.turns)
            host, port = self.targets[index]
            connection = http.client.HTTPConnection(host, port, timeout=30)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                answer = response.status, response.getheaders(), response.read()
            except ConnectionError:  # refused, or reset by a gunicorn that is stopping
                continue
            finally:
                connection.close()
            with self.lock:
                self.routed.append((path, index))
            return answer
        return 502, [], b"no target answered"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
