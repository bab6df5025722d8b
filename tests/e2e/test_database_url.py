"""app-database-url (database.mode rds) as an instance runs it after app-fetch-secrets: Debian's
/usr/bin/python3 and boto3, the shipped text, its input from the secrets source file the program
renders for an rds stack, against moto's Secrets Manager and a real PostgreSQL (TLS from a test
CA, scram password) listening on PostgreSQL's own port as RDS does. The one stand-in besides
moto is AWS's truststore URL, answered with the test CA for exactly that URL."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from e2e_harness.deployment import loopback_address, make_base
from e2e_harness.pki import issue_server_cert, make_ca
from e2e_harness.postgres_server import BIN, PostgresServer
from moto.server import ThreadedMotoServer

from tests.machine_scripts import SYSTEM_PYTHON, UNIT_UMASK, shipped
from tests.test_rds import CA_SHA256, with_rds
from userdata.layout import SECRETS_SOURCE_ENV
from userdata.render import written_files

REGION = "eu-west-1"
TRUSTSTORE = f"https://truststore.pki.rds.amazonaws.com/{REGION}/{REGION}-bundle.pem"
# Runs the shipped script as __main__ with urlopen answering AWS's truststore URL (only that one)
# from a file: what the instance would download.
WITH_TRUSTSTORE = """
import io, runpy, sys, urllib.request
url, bundle, script = sys.argv[1:4]
def urlopen(asked, timeout=None):
    assert asked == url, asked
    return io.BytesIO(open(bundle, "rb").read())
urllib.request.urlopen = urlopen
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[PostgresServer, Path]]:
    base = make_base()
    host = loopback_address(71)
    ca = make_ca(base / "pki", "rds")
    cert = issue_server_cert(base / "pki", "postgres", ca, host)
    server = PostgresServer(host, 5432, cert, base / "postgres")
    server.start()
    try:
        yield server, ca[0]
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def secrets_manager() -> Iterator[tuple[str, object]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield endpoint, client
    server.stop()


def rendered_source() -> dict[str, str]:
    """The secrets source file of a web instance of prod with its database, as the program renders it."""
    instance = next(i for i in with_rds().instances if i.role == "web")
    (source,) = [f.content for f in written_files(instance.user_data) if f.path == SECRETS_SOURCE_ENV]
    return dict(line.split("=", 1) for line in source.splitlines())


def run(
    database: tuple[PostgresServer, Path], secrets_manager: tuple[str, object], target: Path, bundle: Path
) -> subprocess.CompletedProcess[str]:
    server, _ = database
    endpoint, client = secrets_manager
    source = rendered_source()
    name = source["DATABASE_SECRET"].strip("'")
    secret = json.dumps({"username": server.user, "password": server.password})
    try:
        client.create_secret(Name=name, SecretString=secret)  # type: ignore[attr-defined]
    except client.exceptions.ResourceExistsException:  # type: ignore[attr-defined]
        client.put_secret_value(SecretId=name, SecretString=secret)  # type: ignore[attr-defined]
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **{key: value.strip("'") for key, value in source.items()},
        # Where this test's database and files are, instead of the instance's.
        "DATABASE_LOCATION": f"{server.host}/postgres",
        "DATABASE_CA_SHA256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
        "SECRETS_ENV_FILE": str(target),
    }
    script = str(shipped("app-database-url"))
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", WITH_TRUSTSTORE, TRUSTSTORE, str(bundle), script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        umask=UNIT_UMASK,
    )


def database_url(target: Path) -> str:
    (line,) = [line for line in target.read_text().splitlines() if line.startswith("DATABASE_URL=")]
    return line.removeprefix("DATABASE_URL=").strip("'")


def query(url: str) -> str:
    done = subprocess.run(
        [
            str(BIN / "psql"),
            url,
            "--tuples-only",
            "--no-align",
            "--command",
            "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_url_reaches_the_database_over_verified_tls_and_keeps_the_other_secrets(
    database, secrets_manager, tmp_path
) -> None:
    server, ca = database
    target = tmp_path / "secrets.env"
    target.write_text("CELERY_BROKER_URL='rediss://:t@redis:6379/0?ssl_cert_reqs=required'\nDJANGO_SECRET_KEY='k'\n")
    done = run(database, secrets_manager, target, ca)
    assert done.returncode == 0, done.stderr
    url = database_url(target)
    assert url.startswith(f"postgres://{server.user}:") and url.endswith(
        f"@{server.host}/postgres?sslmode=verify-full&sslrootcert={tmp_path}/rds-ca.pem"
    )
    assert (tmp_path / "rds-ca.pem").read_bytes() == ca.read_bytes()
    assert target.read_text().startswith("CELERY_BROKER_URL='rediss://:t@redis:6379/0?ssl_cert_reqs=required'\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert server.password not in done.stdout + done.stderr
    assert query(url) == f"{server.user}|t"


def test_a_reload_after_a_rotation_writes_the_new_password_once(database, secrets_manager, tmp_path) -> None:
    server, ca = database
    target = tmp_path / "secrets.env"
    target.write_text("DJANGO_SECRET_KEY='k'\n")
    assert run(database, secrets_manager, target, ca).returncode == 0
    old = database_url(target)
    # As RDS's rotation does: the password changes in the database and in the secret.
    rotated = "r0tated/with:odd@chars%"
    server.query(f"alter user {server.user} password '{rotated}'")
    server.password = rotated
    assert run(database, secrets_manager, target, ca).returncode == 0
    assert target.read_text().count("DATABASE_URL=") == 1
    assert database_url(target) != old
    assert query(database_url(target)) == f"{server.user}|t"


def test_a_swapped_ca_bundle_is_refused_and_nothing_is_written(database, secrets_manager, tmp_path) -> None:
    _, ca = database
    target = tmp_path / "secrets.env"
    target.write_text("DJANGO_SECRET_KEY='k'\n")
    forged = tmp_path / "forged.pem"
    forged.write_bytes(ca.read_bytes() + b"\n")
    server, _ = database
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", WITH_TRUSTSTORE, TRUSTSTORE, str(forged), str(shipped("app-database-url"))],
        env={
            "PATH": "/usr/bin:/bin",
            "AWS_REGION": REGION,
            "SECRETS_ENV_FILE": str(target),
            "DATABASE_SECRET": "unused",
            "DATABASE_LOCATION": f"{server.host}/postgres",
            "DATABASE_CA_SHA256": hashlib.sha256(ca.read_bytes()).hexdigest(),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "app-database-url: CA bundle is not database.caBundleSha256"
    assert target.read_text() == "DJANGO_SECRET_KEY='k'\n"
    assert not (tmp_path / "rds-ca.pem").exists()


def test_the_program_pins_the_digest_the_config_gives() -> None:
    assert rendered_source()["DATABASE_CA_SHA256"] == CA_SHA256


def test_cloud_init_schema_accepts_the_user_data_of_every_rds_machine(tmp_path) -> None:
    for instance in with_rds().instances:
        document = tmp_path / f"{instance.logical_name}.yaml"
        document.write_text(instance.user_data)
        result = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(document)], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stdout + result.stderr
