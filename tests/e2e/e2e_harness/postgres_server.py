"""A real PostgreSQL (Debian 12's postgresql-15) as an app's existing database: a private cluster
of the test run, TLS only (hostssl + scram-sha-256, no plain host line), a password user, bound to
one loopback address. Run as the `postgres` user (the server refuses root), stopped by the test."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from e2e_harness.pki import ServerCert

BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"
DATABASE = "postgres"


@dataclass
class PostgresServer:
    host: str
    port: int
    cert: ServerCert
    directory: Path
    user: str = "app"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self) -> str:
        """DATABASE_URL as an operator stores it in Parameter Store: TLS with the CA checked and
        the host name (here the IP SAN) verified."""
        return (
            f"postgres://{self.user}:{quote(self.password)}@{self.host}:{self.port}/{DATABASE}"
            f"?sslmode=verify-full&sslrootcert={self.cert.ca_file}"
        )

    def _as_server_user(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", *argv], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tls = self.directory / "tls"
        tls.mkdir()
        for source, name in ((self.cert.cert_file, "server.pem"), (self.cert.key_file, "server.key")):
            shutil.copyfile(source, tls / name)
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        shutil.chown(self.directory, SERVER_USER)
        for path in (tls, tls / "server.pem", tls / "server.key", password_file):
            shutil.chown(path, SERVER_USER)
        (tls / "server.key").chmod(0o600)
        password_file.chmod(0o600)
        self._as_server_user(
            str(BIN / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            self.user,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-instructions",
        )
        password_file.unlink()
        # Clients on loopback connect from 127.0.0.1 whatever 127/8 address the server has.
        (self.data / "pg_hba.conf").write_text("hostssl all all 127.0.0.0/8 scram-sha-256\n")
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "ssl": "on",
            "ssl_cert_file": f"'{tls / 'server.pem'}'",
            "ssl_key_file": f"'{tls / 'server.key'}'",
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",  # a throwaway cluster: durability is not what the tests measure
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.process = subprocess.Popen(
            ["runuser", "-u", SERVER_USER, "--", str(BIN / "postgres"), "-D", str(self.data)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "postgres.log", "wb"),
        )
        self._wait_ready()

    def query(self, sql: str) -> str:
        """One query over TLS with the password, as the app connects."""
        done = subprocess.run(
            [str(BIN / "psql"), self.url(), "--tuples-only", "--no-align", "--command", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: smart shutdown
            self.process.wait(timeout=60)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.directory / 'postgres.log').read_text()[-2000:]}")
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "--host", self.host, "--port", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready: {(self.directory / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)
