"""TCP ports for the servers the tests start on this host (gunicorn, moto, PostgreSQL).

A port the kernel picks for `bind((host, 0))` stays free only until the probe closes it: the
kernel may hand the same port to the next probe (fresh-clone CI, 2026-12-06: a web instance's
gunicorn and the Parameter Store's moto server both got 33089, and /healthz reached moto), or to
any outgoing connection. So a port here comes from outside the kernel's ephemeral range (below
it, or above it on a host where little is below), is never handed out twice by one process, comes
from its own xdist worker's slice of those ports (workers cannot collide), and is free on every
address when it is handed out.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

LOWEST = 10_000  # above the ports services listen on by default (PostgreSQL 5432, Redis 6379...)
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_handed_out: set[int] = set()
_random = random.SystemRandom()  # not the global generator, which a test may seed
_lock = threading.Lock()


def ephemeral_range(source: Path = EPHEMERAL_RANGE) -> range:
    """The ports the kernel picks from for bind(0) and outgoing connections."""
    low, high = (int(field) for field in source.read_text().split())
    return range(low, high + 1)


def worker_slice(ports: range, worker: str, worker_count: int) -> range:
    """xdist worker `gwN`'s share of `ports` (all of them outside xdist). A process a test starts
    (a bench) inherits its worker's slice; the probe keeps it off its parent's listening ports."""
    if not worker.startswith("gw"):
        return ports
    index, size = int(worker[2:]), len(ports) // worker_count
    return range(ports.start + index * size, ports.start + (index + 1) * size)


def candidate_ports() -> range:
    ephemeral = ephemeral_range()
    outside = range(LOWEST, ephemeral.start)
    if len(outside) < 1_000:  # a host whose ephemeral range starts low: what is above it
        outside = range(ephemeral.stop, 65_536)
    return worker_slice(
        outside,
        os.environ.get("PYTEST_XDIST_WORKER", ""),
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
    )


def is_free(port: int) -> bool:
    """Nothing is bound to the port on any address (gunicorn binds 0.0.0.0; moto 127.0.0.1)."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    ports = candidate_ports()
    with _lock:
        for _ in range(200):
            port = _random.choice(ports)
            if port not in _handed_out and is_free(port):
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free port found in {ports.start}-{ports.stop - 1} after 200 tries")
