"""The Parameter Store stand-in: a moto server on loopback holding the stack's SecureStrings."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class ParameterStore:
    region: str
    log_file: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def instance_environment(self) -> dict[str, str]:
        """What an instance's role and endpoint configuration would give app-fetch-secrets."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_SSM": self.endpoint}

    def start(self) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {self.log_file.read_text()[-2000:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)

    def put_secret(self, name: str, value: str) -> None:
        client = boto3.client("ssm", region_name=self.region, endpoint_url=self.endpoint,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
