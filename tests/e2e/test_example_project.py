"""examples/bookshelf, not the sample app, on the rendered stack with a real PostgreSQL: built by
python -m ops build-release, installed by each machine's own app-release.service from the S3
stand-in, migrated with the release's manage.py under the units' environment (DATABASE_URL from
Parameter Store through app.secretParameters, TLS verify-full, password auth), then gunicorn from
the rendered unit serves the DB-backed page and the hashed, compressed static files WhiteNoise
serves from the release's static/, and the Celery worker from its rendered unit writes a row."""

from __future__ import annotations

import re
import urllib.request

import pytest
from e2e_harness.deployment import PYTHON, Deployment, wait_until
from e2e_harness.example_project import example_database, example_stack
from e2e_harness.machine import run_like

from userdata import layout

pytestmark = pytest.mark.xdist_group("example-project")


@pytest.fixture(scope="module")
def database():
    with example_database(address_salt=7) as server:
        yield server


@pytest.fixture(scope="module")
def stack(database):
    deployment = example_stack(database, worker_count=2, web_count=1, address_salt=8)
    try:
        deployment.boot()
        yield deployment
    finally:
        deployment.close()


def manage(stack: Deployment, *args: str):
    """manage.py in the active release, as the web unit's user with its env files."""
    return run_like(stack.web, layout.GUNICORN_UNIT, [PYTHON, "manage.py", *args], timeout=180)


@pytest.fixture(scope="module")
def migrated(stack):
    """`migrate` run once, as the release command would (app.releaseCommand's default)."""
    return manage(stack, "migrate", "--noinput")


def test_the_release_migrates_the_database_schema_and_data(migrated, database):
    assert migrated.returncode == 0, migrated.stderr + migrated.stdout
    applied = database.query("SELECT name FROM django_migrations WHERE app = 'shelf' ORDER BY name")
    assert applied.splitlines() == ["0001_initial", "0002_seed_books"]
    assert database.query("SELECT count(*) FROM shelf_book") == "3"  # the data migration's rows
    # every connection to it is TLS (hostssl only), the app's included
    assert database.query("SELECT bool_and(ssl) FROM pg_stat_ssl") == "t"


def test_gunicorn_serves_the_db_backed_page_and_its_hashed_static_files(stack, migrated):
    status, body = stack.http("GET", "/")
    page = body.decode()
    assert status == 200, page[:2000]
    assert "A Pattern Language" in page and f'data-release="{stack.release}"' in page
    css = re.search(r'href="(/static/shelf/site\.[0-9a-f]{12}\.css)"', page)
    js = re.search(r'src="(/static/shelf/shelf\.[0-9a-f]{12}\.js)"', page)
    assert css and js, page
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.web_port}{css.group(1)}", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"  # the .gz collectstatic wrote
        assert "immutable" in response.headers["Cache-Control"]  # hashed names cache forever
    assert stack.http("GET", js.group(1))[0] == 200


def test_the_worker_from_its_rendered_unit_writes_its_row(stack, migrated, database):
    sent = stack.celery(stack.by_role(layout.WORKER_ROLE)[0], "call", "shelf.tasks.take_census")
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: database.query("SELECT count(*) FROM shelf_census") == "1", timeout=60)
    assert database.query("SELECT books FROM shelf_census") == "3"
