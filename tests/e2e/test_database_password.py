"""app-database-password (database.mode rds) as an instance runs it at boot and from its timer:
Debian's /usr/bin/python3 and boto3, the shipped text, its input from the secrets source file the
program renders for an rds stack, against moto's Secrets Manager and a real PostgreSQL (TLS from a
test CA, scram password) listening on PostgreSQL's own port as RDS does; the connection is the
DATABASE_URL the program renders into app.env (no password in it: passfile=). The one stand-in
besides moto is AWS's truststore URL, answered with the test CA for exactly that URL."""

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
from userdata.layout import APP_ENV, DATABASE_CA_FILE, DATABASE_DIR, DATABASE_PASSFILE, SECRETS_SOURCE_ENV
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
# RDS's generated passwords avoid these, but the file's format must not depend on it.
ODD_PASSWORD = r"r0tated:with\back\\slash:"


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


def rendered_env(path: str) -> dict[str, str]:
    """An env file of a web instance of prod with its database, as the program renders it."""
    instance = next(i for i in with_rds().instances if i.role == "web")
    (content,) = [f.content for f in written_files(instance.user_data) if f.path == path]
    return {key: value.strip("'") for key, value in (line.split("=", 1) for line in content.splitlines())}


def put_secret(secrets_manager: tuple[str, object], username: str, password: str) -> None:
    _, client = secrets_manager
    name = rendered_env(SECRETS_SOURCE_ENV)["DATABASE_SECRET"]
    secret = json.dumps({"username": username, "password": password})
    try:
        client.create_secret(Name=name, SecretString=secret)  # type: ignore[attr-defined]
    except client.exceptions.ResourceExistsException:  # type: ignore[attr-defined]
        client.put_secret_value(SecretId=name, SecretString=secret)  # type: ignore[attr-defined]


def run(
    secrets_manager: tuple[str, object], directory: Path, bundle: Path, endpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": endpoint or secrets_manager[0],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **rendered_env(SECRETS_SOURCE_ENV),
        "DATABASE_CA_SHA256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
        # What systemd sets for RuntimeDirectory=: here the test's own directory.
        "RUNTIME_DIRECTORY": str(directory),
    }
    script = str(shipped("app-database-password"))
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", WITH_TRUSTSTORE, TRUSTSTORE, str(bundle), script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        umask=UNIT_UMASK,
    )


def database_url(server: PostgresServer, directory: Path) -> str:
    """The rendered DATABASE_URL with this test's host, database and directory for the instance's."""
    url = rendered_env(APP_ENV)["DATABASE_URL"]
    assert url.startswith("postgres://django@prod-postgres.") and ":" not in url.split("@")[0].removeprefix("postgres:")
    url = url.replace("django@", f"{server.user}@").replace(DATABASE_DIR, str(directory))
    host = url.split("@", 1)[1].split("/", 1)[0]
    return url.replace(f"@{host}/app?", f"@{server.host}/postgres?")


def query(url: str) -> subprocess.CompletedProcess[str]:
    """A new connection, as the app's pool opens one: the password only from the passfile."""
    return subprocess.run(
        [
            str(BIN / "psql"),
            url,
            "--no-password",
            "--tuples-only",
            "--no-align",
            "--command",
            "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )


def test_the_rendered_url_reaches_the_database_over_verified_tls_with_the_password_file(
    database, secrets_manager, tmp_path
) -> None:
    server, ca = database
    put_secret(secrets_manager, server.user, server.password)
    done = run(secrets_manager, tmp_path, ca)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rds-ca.pem").read_bytes() == ca.read_bytes()
    passfile = tmp_path / "pgpass"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert server.password not in done.stdout + done.stderr
    assert DATABASE_CA_FILE == f"{DATABASE_DIR}/rds-ca.pem" and DATABASE_PASSFILE == f"{DATABASE_DIR}/pgpass"
    connected = query(database_url(server, tmp_path))
    assert connected.returncode == 0, connected.stderr
    assert connected.stdout.strip() == f"{server.user}|t"


def test_after_a_rotation_new_connections_need_the_refresh_and_get_it_from_the_next_run(
    database, secrets_manager, tmp_path
) -> None:
    server, ca = database
    put_secret(secrets_manager, server.user, server.password)
    assert run(secrets_manager, tmp_path, ca).returncode == 0
    url = database_url(server, tmp_path)
    # As RDS's rotation does: the database first, then the secret.
    server.query(f"alter user {server.user} password '{ODD_PASSWORD}'")
    server.password = ODD_PASSWORD
    put_secret(secrets_manager, server.user, ODD_PASSWORD)
    stale = query(url)
    assert stale.returncode != 0 and "password authentication failed" in stale.stderr, stale.stderr
    assert run(secrets_manager, tmp_path, ca).returncode == 0  # the timer's next run
    fresh = query(url)
    assert fresh.returncode == 0, fresh.stderr


def test_an_unreadable_secret_keeps_the_file_and_exits_75_but_fails_a_boot(database, secrets_manager, tmp_path) -> None:
    server, ca = database
    put_secret(secrets_manager, server.user, server.password)
    nowhere = "http://127.0.0.1:9"  # refused at once
    boot = run(secrets_manager, tmp_path, ca, endpoint=nowhere)
    assert boot.returncode == 1 and not (tmp_path / "pgpass").exists()
    assert run(secrets_manager, tmp_path, ca).returncode == 0
    before = (tmp_path / "pgpass").read_bytes()
    later = run(secrets_manager, tmp_path, ca, endpoint=nowhere)
    assert later.returncode == 75 and "kept the password file" in later.stdout, later
    assert (tmp_path / "pgpass").read_bytes() == before


def test_a_swapped_ca_bundle_is_refused_and_nothing_is_written(database, secrets_manager, tmp_path) -> None:
    _, ca = database
    forged = tmp_path / "forged.pem"
    forged.write_bytes(ca.read_bytes() + b"\n")
    directory = tmp_path / "run"
    directory.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": REGION,
        "RUNTIME_DIRECTORY": str(directory),
        "DATABASE_SECRET": "unused",
        "DATABASE_CA_SHA256": hashlib.sha256(ca.read_bytes()).hexdigest(),
    }
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", WITH_TRUSTSTORE, TRUSTSTORE, str(forged), str(shipped("app-database-password"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "app-database-password: CA bundle is not database.caBundleSha256"
    assert list(directory.iterdir()) == []


def test_the_program_pins_the_digest_the_config_gives() -> None:
    assert rendered_env(SECRETS_SOURCE_ENV)["DATABASE_CA_SHA256"] == CA_SHA256


def test_cloud_init_schema_accepts_the_user_data_of_every_rds_machine(tmp_path) -> None:
    for instance in with_rds().instances:
        document = tmp_path / f"{instance.logical_name}.yaml"
        document.write_text(instance.user_data)
        result = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(document)], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stdout + result.stderr
