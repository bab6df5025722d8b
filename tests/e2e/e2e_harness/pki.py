"""A throwaway certificate authority and server certificates, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCert:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) of a new self-signed CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name} test CA",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def issue_server_cert(
    directory: Path, name: str, ca: tuple[Path, Path], ip: str, *more_ips: str, dns_name: str | None = None
) -> ServerCert:
    """A server certificate for `ip` (an IP SAN: the rendered broker URL names the host by IP),
    `more_ips` (a server clients reach at other addresses, e.g. from a VM), and `dns_name` when
    the URL names an endpoint (ElastiCache's certificates name it)."""
    ca_cert, ca_key = ca
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    extensions = directory / f"{name}.ext"
    names = ",".join([*([f"DNS:{dns_name}"] if dns_name else []), *(f"IP:{address}" for address in (ip, *more_ips))])
    extensions.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        f"/CN={ip}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    return ServerCert(ca_cert, cert, key)
