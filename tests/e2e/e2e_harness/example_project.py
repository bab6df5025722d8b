"""examples/bookshelf (a Django project with PostgreSQL models, a schema migration and a data
migration) on a stack of simulated machines, its database a private TLS PostgreSQL whose URL
reaches the units from Parameter Store through app.secretParameters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2e_harness.deployment import REPO, Deployment, loopback_address, make_base
from e2e_harness.pki import issue_server_cert, make_ca
from e2e_harness.ports import free_port
from e2e_harness.postgres_server import PostgresServer

EXAMPLE = REPO / "examples" / "bookshelf"
DATABASE_URL_PARAMETER = "/bookshelf/e2e/database-url"


@contextmanager
def example_database(address_salt: int) -> Iterator[PostgresServer]:
    """A running PostgreSQL with a certificate from a CA of its own, stopped and removed after."""
    base = make_base()
    host = loopback_address(address_salt)
    ca = make_ca(base / "pki", "database")
    cert = issue_server_cert(base / "pki", "postgres", ca, host)
    for path in (base / "pki").iterdir():  # the app user reads the CA (sslrootcert)
        path.chmod(0o600 if path.suffix == ".key" else 0o644)
    (base / "pki").chmod(0o755)
    server = PostgresServer(host, free_port(), cert, base / "postgres")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def example_stack(database: PostgresServer, **create: Any) -> Deployment:
    """Deployment.create for the example project (release 1 built by python -m ops build-release)
    with its stack keys; `create`: the rest of Deployment.create's arguments."""
    return Deployment.create(
        app=EXAMPLE,
        app_overrides={
            "app.module": "bookshelf",
            "app.settingsModule": "bookshelf.settings",
            "app.secretParameters": {"DATABASE_URL": DATABASE_URL_PARAMETER},
        },
        app_secrets={DATABASE_URL_PARAMETER: database.url()},
        **create,
    )
