"""A real redis-server (or valkey-server: the same configuration) as ElastiCache runs it for
this stack: TLS only, AUTH token, noeviction, append-only persistence, bound to one loopback
address."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from e2e_harness.pki import ServerCert

PORT = 6379  # what the program's mocked replication group reports; each server gets its own IP
# The server program of each `redis.engine`: valkey-server is Debian 12's bookworm-backports
# build (scripts/setup.d/20-e2e.sh), with TLS.
SERVER_BINARY = {"redis": "redis-server", "valkey": "valkey-server"}


@dataclass
class RedisServer:
    host: str  # a 127.0.0.0/8 address of its own, so port 6379 never collides with another Redis
    password: str
    cert: ServerCert
    directory: Path
    plain_port: int | None = None  # benchmarks only: a second, unencrypted listener
    binary: str = SERVER_BINARY["redis"]
    # A member of a replication group (e2e_harness/deployment.py fail_over): replicates over TLS
    # with the token, from `replica_of` (a primary's address) if given.
    replicated: bool = False
    replica_of: str | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def config_file(self) -> Path:
        return self.directory / "redis.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    def config(self) -> str:
        lines = [
            f"bind {self.host}",
            "protected-mode yes",
            f"port {self.plain_port or 0}",
            f"tls-port {PORT}",
            f"tls-cert-file {self.cert.cert_file}",
            f"tls-key-file {self.cert.key_file}",
            f"tls-ca-cert-file {self.cert.ca_file}",
            "tls-auth-clients no",
            f"requirepass {self.password}",
            "maxmemory-policy noeviction",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            f"dir {self.directory}",
            f"logfile {self.log_file}",
            "daemonize no",
        ]
        if self.replicated:
            # Announced as its own address (its connections come from 127.0.0.1), so the primary's
            # FAILOVER TO finds it.
            lines += ["tls-replication yes", f"masterauth {self.password}", f"replica-announce-ip {self.host}"]
        if self.replica_of:
            lines.append(f"replicaof {self.replica_of} {PORT}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        self.process = subprocess.Popen(
            [self.binary, str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def stop(self) -> None:
        """SIGTERM: Redis flushes the append-only file and exits, as on a service restart."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, db: int = 0, *, tls: bool = True) -> redis.Redis:
        if not tls:
            return redis.Redis(host=self.host, port=self.plain_port, password=self.password, db=db)
        return redis.Redis(
            host=self.host,
            port=PORT,
            password=self.password,
            db=db,
            ssl=True,
            ssl_cert_reqs="required",
            ssl_ca_certs=str(self.cert.ca_file),
            socket_timeout=10,
        )

    def url(self, db: int, *, tls: bool = True) -> str:
        if not tls:
            return f"redis://:{self.password}@{self.host}:{self.plain_port}/{db}"
        return (
            f"rediss://:{self.password}@{self.host}:{PORT}/{db}?ssl_cert_reqs=required&ssl_ca_certs={self.cert.ca_file}"
        )

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.binary} exited with {self.process.returncode}: "
                    f"{self.log_file.read_text()[-2000:] if self.log_file.exists() else ''}"
                )
            try:
                if self.client().ping():
                    return
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
