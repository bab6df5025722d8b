"""AWS's agent packages are installed only with a good signature: install-aws-agent's own checks
run with the real gpgv against packages signed by a throwaway key (gpg --quick-gen-key in a
temporary GNUPGHOME), served from a loopback stand-in for the region's S3 bucket. dpkg and
systemctl are recording stand-ins on PATH (the real ones would change this host): on every
refusal they were never called."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import runpy
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.vm.gpg import gpg, throwaway_home
from tests.machine_scripts import FILES, SYSTEM_PYTHON, shipped

INSTALLER = shipped("install-aws-agent")
REGION = "eu-west-1"
SSM_VERSION = "3.3.4851.0"
SSM_KEY = f"amazon-ssm-{REGION}/{SSM_VERSION}/debian_amd64/amazon-ssm-agent.deb"
# AWS's documented fingerprint of the SSM agent's current signing key (verify-agent-signature.html).
SSM_FINGERPRINT = "1C5B395CBE5E74E2F1CA21592784DBF388D19D46"


@dataclasses.dataclass(frozen=True)
class Signer:
    home: Path
    fingerprint: str
    public_key: str  # armored

    def sign(self, path: Path, at: str | None = None) -> Path:
        """A detached signature, made now or at the given time (gpg's faked clock, YYYYMMDDTHHMMSS)."""
        signature = Path(f"{path}.sig")
        clock = ["--faked-system-time", at] if at else []
        gpg(self.home, *clock, "--detach-sign", "--output", str(signature), str(path))
        return signature

    def revoked(self) -> Signer:
        """The same key after importing the revocation certificate gpg made with it: its export
        carries the revocation."""
        certificate = (self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev").read_text()
        # gpg prefixes the armor line with ':' so that the file cannot be imported by accident.
        gpg(self.home, "--import", input=certificate.replace(":-----BEGIN", "-----BEGIN"))
        return dataclasses.replace(self, public_key=gpg(self.home, "--armor", "--export", self.fingerprint))


# A key made on 2020-01-01 that expired a day later, and the time its signatures are made at.
EXPIRED_KEY = ("20200101T000000", "1d")
BEFORE_EXPIRY = "20200101T120000"


def make_signer(directory: Path, made: tuple[str, str] | None = None) -> Signer:
    """A fresh signing key; `made` = (gpg's faked clock, expiry) for one that has expired since."""
    clock, expiry = ["--faked-system-time", made[0]] if made else [], made[1] if made else "never"
    gpg(directory, *clock, "--quick-gen-key", "django-stack test signer <signer@invalid>", "ed25519", "sign", expiry)
    colons = gpg(directory, "--with-colons", "--list-keys")
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:"))
    return Signer(directory, fingerprint, gpg(directory, "--armor", "--export", fingerprint))


@contextlib.contextmanager
def throwaway_signer(made: tuple[str, str] | None = None) -> Iterator[Signer]:
    with throwaway_home("gnupg-") as home:
        yield make_signer(home, made)


@pytest.fixture(scope="module")
def signer() -> Iterator[Signer]:
    with throwaway_signer() as made:
        yield made


@pytest.fixture(scope="module")
def stranger() -> Iterator[Signer]:
    with throwaway_signer() as made:
        yield made


@pytest.fixture()
def bucket(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback: the S3 endpoint the installer is pointed at
    (AWS_ENDPOINT_URL_S3), with the production path layout under it."""
    root = tmp_path / "s3"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def put_package(root: Path, key: str, content: bytes = b"!<arch>\nstand-in agent package\n") -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture()
def host_tools(tmp_path: Path) -> tuple[Path, Path]:
    """dpkg and systemctl that record their arguments: (bin dir, record file)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("dpkg", "systemctl"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {record}\n')
        script.chmod(0o755)
    return bin_dir, record


def install(
    package: str, keyring: Path, endpoint: str, host_tools: tuple[Path, Path]
) -> subprocess.CompletedProcess[str]:
    bin_dir, _ = host_tools
    return subprocess.run(
        [SYSTEM_PYTHON, str(INSTALLER), "--keyring", str(keyring), package, SSM_VERSION, REGION],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_ENDPOINT_URL_S3": endpoint},
        capture_output=True,
        text=True,
        timeout=120,
    )


def calls(host_tools: tuple[Path, Path]) -> list[str]:
    record = host_tools[1]
    return record.read_text().splitlines() if record.exists() else []


def keyring_file(tmp_path: Path, *keys: str) -> Path:
    path = tmp_path / "keys.asc"
    path.write_text("".join(keys))
    return path


def test_a_package_with_a_good_signature_is_installed_and_started(signer, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    signer.sign(put_package(root, SSM_KEY))
    result = install("amazon-ssm-agent", keyring_file(tmp_path, signer.public_key), endpoint, host_tools)
    assert result.returncode == 0, result.stderr
    assert f"good signature from {signer.fingerprint}" in result.stdout
    installed = [call for call in calls(host_tools) if call.startswith("dpkg -i ")]
    assert len(installed) == 1 and installed[0].endswith("/amazon-ssm-agent.deb"), calls(host_tools)
    assert calls(host_tools)[-1] == "systemctl enable --now amazon-ssm-agent.service"


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("install-aws-agent: amazon-ssm-agent not installed: "), lines
    return lines[0]


def test_a_tampered_package_is_refused_and_nothing_is_installed(signer, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    package = put_package(root, SSM_KEY)
    signer.sign(package)
    package.write_bytes(package.read_bytes() + b"a trojan\n")
    line = refusal(install("amazon-ssm-agent", keyring_file(tmp_path, signer.public_key), endpoint, host_tools))
    assert "BAD signature" in line
    assert calls(host_tools) == []


def test_a_package_without_its_signature_is_refused(signer, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    put_package(root, SSM_KEY)
    line = refusal(install("amazon-ssm-agent", keyring_file(tmp_path, signer.public_key), endpoint, host_tools))
    assert line.endswith(f"cannot download {endpoint}/{SSM_KEY}.sig: HTTP 404")
    assert calls(host_tools) == []


def test_a_package_signed_by_a_key_outside_the_keyring_is_refused(signer, stranger, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    stranger.sign(put_package(root, SSM_KEY))
    line = refusal(install("amazon-ssm-agent", keyring_file(tmp_path, signer.public_key), endpoint, host_tools))
    assert f"signed by key {stranger.fingerprint[-16:]}, which the keyring does not hold" in line
    assert calls(host_tools) == []


def test_a_signature_file_that_is_no_signature_is_refused(signer, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    package = put_package(root, SSM_KEY)
    Path(f"{package}.sig").write_bytes(b"<Error><Code>AccessDenied</Code></Error>")
    line = refusal(install("amazon-ssm-agent", keyring_file(tmp_path, signer.public_key), endpoint, host_tools))
    assert "the .sig holds no OpenPGP signature" in line
    assert calls(host_tools) == []


def installer_verify(pinned: str | None = None, package: str = "amazon-cloudwatch-agent"):
    """The installer's verify step, optionally with an agent's documented fingerprint replaced
    (nobody but AWS can sign with AWS's key)."""
    module = runpy.run_path(str(INSTALLER))
    if pinned:
        agents = module["AGENTS"]
        agents[package] = dataclasses.replace(agents[package], documented_fingerprint=pinned)
    return module["verify"], module["Refused"], module["dearmor"]


def test_the_cloudwatch_agents_published_key_is_used_only_with_the_pinned_fingerprint(signer, tmp_path):
    package = put_package(tmp_path, "amazon-cloudwatch-agent.deb")
    signature = signer.sign(package)
    fetched: list[str] = []

    def published_key() -> bytes:
        fetched.append("assets/amazon-cloudwatch-agent.gpg")
        return signer.public_key.encode()

    verify, refused, _ = installer_verify()
    with pytest.raises(refused, match=f"signed by {signer.fingerprint}, but AWS documents 937616F3450B7D806CBD9725"):
        verify("amazon-cloudwatch-agent", str(package), str(signature), b"", published_key, str(tmp_path))
    verify, _, _ = installer_verify(pinned=signer.fingerprint)
    assert (
        verify("amazon-cloudwatch-agent", str(package), str(signature), b"", published_key, str(tmp_path))
        == signer.fingerprint
    )
    assert fetched == ["assets/amazon-cloudwatch-agent.gpg"] * 2


def test_the_ssm_agent_never_falls_back_to_a_fetched_key(signer, stranger, tmp_path):
    package = put_package(tmp_path, "amazon-ssm-agent.deb")
    signature = stranger.sign(package)
    verify, refused, dearmor = installer_verify()

    def published_key() -> bytes:
        raise AssertionError("the SSM agent has no published key file to fetch")

    with pytest.raises(refused, match="which the keyring does not hold"):
        verify(
            "amazon-ssm-agent",
            str(package),
            str(signature),
            dearmor(signer.public_key.encode()),
            published_key,
            str(tmp_path),
        )


def test_the_shipped_keyring_holds_awss_ssm_agent_key():
    with throwaway_home("gnupg-") as home:
        colons = gpg(home, "--with-colons", "--show-keys", str(FILES.parent / "keys" / "aws-agent-keys.asc"))
    fingerprints = [line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr:")]
    assert fingerprints == [SSM_FINGERPRINT]
    assert "ssm-agent-signer@amazon.com" in colons


@pytest.fixture(scope="module")
def expired() -> Iterator[Signer]:
    with throwaway_signer(EXPIRED_KEY) as made:
        yield made


def test_a_package_signed_by_an_expired_key_is_refused(expired, bucket, host_tools, tmp_path):
    root, endpoint = bucket
    expired.sign(put_package(root, SSM_KEY), at=BEFORE_EXPIRY)
    line = refusal(install("amazon-ssm-agent", keyring_file(tmp_path, expired.public_key), endpoint, host_tools))
    assert f"signed by {expired.fingerprint}, whose key has expired; AWS documents {SSM_FINGERPRINT}" in line
    assert calls(host_tools) == []


def test_an_expired_key_is_accepted_only_when_aws_documents_it_as_current(expired, tmp_path):
    package = put_package(tmp_path, "amazon-ssm-agent.deb")
    signature = expired.sign(package, at=BEFORE_EXPIRY)
    verify, _, dearmor = installer_verify(pinned=expired.fingerprint, package="amazon-ssm-agent")
    keyring = dearmor(expired.public_key.encode())
    assert verify("amazon-ssm-agent", str(package), str(signature), keyring, bytes, str(tmp_path)) == (
        expired.fingerprint
    )


def test_a_package_signed_by_a_revoked_key_is_refused_even_when_documented(tmp_path):
    with throwaway_signer() as signer:
        package = put_package(tmp_path, "amazon-ssm-agent.deb")
        signature = signer.sign(package)
        revoked = signer.revoked()
        verify, refused, dearmor = installer_verify(pinned=revoked.fingerprint, package="amazon-ssm-agent")
        with pytest.raises(refused, match=f"signed by {revoked.fingerprint}, whose key has been revoked"):
            verify(
                "amazon-ssm-agent",
                str(package),
                str(signature),
                dearmor(revoked.public_key.encode()),
                bytes,
                str(tmp_path),
            )
