"""The AWS endpoints an instance talks to, stood in by one moto server on loopback: Parameter
Store (the stack's SecureStrings and its live release parameter), S3 (the release artifacts) and
CloudWatch (the metrics the Beat instance publishes)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from e2e_harness.ports import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


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
        """What an instance's role and endpoint configuration would give app-fetch-secrets,
        app-release and app-queue-metrics."""
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL_SSM": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL_CLOUDWATCH": self.endpoint,
        }

    def start(self) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {self.log_file.read_text()[-2000:]}") from error
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self, service: str):
        return boto3.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def put_secret(self, name: str, value: str) -> None:
        self.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def put_release(self, name: str, release: str) -> None:
        """The live release parameter, as the program creates it and the ops tool records it."""
        self.client("ssm").put_parameter(Name=name, Value=release, Type="String", Overwrite=True)

    def upload_artifact(self, bucket: str, key: str, artifact: Path) -> None:
        """The operator's `aws s3 cp` of scripts/build-release.sh's output."""
        s3 = self.client("s3")
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region})
        s3.upload_file(str(artifact), bucket, key)
