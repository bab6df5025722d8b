"""`systemctl` for an agent that runs on a simulated machine: the stack runs without systemd, so
a `systemctl` on the agent's PATH hands each request to the harness, which answers from (and
acts on) the machine's units as systemd would (KillMode=mixed stops: see machine.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from e2e_harness.machine import SimulatedMachine
from userdata.layout import BEAT_UNIT, queue_of_worker_unit

SYSTEMCTL = """#!/usr/bin/python3
import json, os, sys, urllib.request
request = urllib.request.Request(os.environ["SYSTEMCTL_STANDIN"], data=json.dumps(sys.argv[1:]).encode())
with urllib.request.urlopen(request, timeout=900) as response:
    reply = json.loads(response.read().decode())
sys.stdout.write(reply["stdout"])
sys.exit(reply["status"])
"""


class SystemdStandin:
    """What `systemctl list-units`, `is-active`, `stop` and `restart` do, done by the harness on
    one machine."""

    def __init__(self, machine: SimulatedMachine, bin_dir: Path) -> None:
        self.machine = machine
        self.stopped: list[tuple[str, float, int]] = []  # unit, when it had stopped, exit status
        bin_dir.mkdir(parents=True, exist_ok=True)
        (bin_dir / "systemctl").write_text(SYSTEMCTL)
        (bin_dir / "systemctl").chmod(0o755)
        self.bin_dir = bin_dir
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                argv = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stdout, status = standin.run(argv)
                body = json.dumps({"stdout": stdout, "status": status}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def environment(self, unit: str) -> dict[str, str]:
        """What the agent's unit gets on top of its own environment: this `systemctl` first."""
        path = self.machine.environment(self.machine.service(unit))["PATH"]
        return {"SYSTEMCTL_STANDIN": self.url, "PATH": f"{self.bin_dir}:{path}"}

    def running(self, unit: str) -> bool:
        process = self.machine.processes.get(unit)
        return process is not None and process.poll() is None

    def run(self, argv: list[str]) -> tuple[str, int]:
        if argv[0] == "list-units":
            celery = [u for u in self.machine.processes if queue_of_worker_unit(u) or u == BEAT_UNIT]
            return "".join(f"{unit} loaded active running\n" for unit in sorted(celery) if self.running(unit)), 0
        if argv[0] == "is-active":
            (unit,) = argv[1:]
            return ("active\n", 0) if self.running(unit) else ("inactive\n", 3)
        if argv[0] == "restart":  # a release switch (ops.scripts.switch_release_script)
            for unit in argv[1:]:
                if self.running(unit):
                    self.machine.stop(unit)
                self.machine.start(unit)
            return "", 0
        assert argv[0] == "stop", argv
        for unit in argv[1:]:
            _, status = self.machine.stop(unit)
            self.stopped.append((unit, time.time(), status))
        return "", 0

    def close(self) -> None:
        self.server.shutdown()
