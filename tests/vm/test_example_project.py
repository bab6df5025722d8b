"""Issue 19 in real boots: examples/bookshelf, a Django project of its own layout built by the
release builder teams use (python -m ops build-release), on the default s3 path: the stock OS
downloads the artifact and app-release installs it at boot. Its database is an existing
PostgreSQL (Debian's, TLS only, password auth) on the host, reached from the guest through qemu's
restricted user network; DATABASE_URL comes from the guest's Parameter Store stand-in through
app.secretParameters; the database section is `existing`; app.releaseCommand is the default
migrate, run at first boot by the program's app-release-command.service under its lock.

The Beat instance boots first and migrates; the web instance boots after it (each guest has a
broker of its own, so the lock does not span the two: tests/e2e/test_migrations.py races two
instances on one broker) and finds nothing to apply."""

from __future__ import annotations

import re

import pytest

from tests.vm.conftest import EXAMPLE_BOOTS
from userdata.layout import BEAT_UNIT, GUNICORN_UNIT, RELEASE_COMMAND_UNIT

# The project's own migrations, and the books its data migration adds (0002_seed_books).
SHELF_MIGRATIONS = ["0001_initial", "0002_seed_books"]
SEEDED_TITLES = ("The Mythical Man-Month", "A Pattern Language", "The Soul of a New Machine")
HASHED_STYLESHEET = re.compile(r"^/static/shelf/site\.[0-9a-f]{12}\.css$")


@pytest.mark.parametrize("name", EXAMPLE_BOOTS)
def test_the_example_project_boots_the_s3_path_with_every_unit_active(name, booted, stack):
    boot = booted(name)
    ready = boot.first("ready")
    assert ready["all_active"] is True, boot.all("not-active")
    assert (GUNICORN_UNIT in ready["units"]) == (name == "bookshelf-web")
    assert (BEAT_UNIT in ready["units"]) == (name == "bookshelf-worker-beat")
    release = boot.first("release")
    assert release["installed"] == [release["active"]] and release["active"] == "vm-bookshelf", release
    assert release["app_user_imports"] == "ok", release
    key = stack.store.artifact_key("vm-bookshelf")
    assert any(r["service"] == "s3" and r["key"] == key and r["found"] for r in boot.first("aws-requests"))
    fetched = [r for r in boot.first("aws-requests") if r["service"] == "ssm" and r["action"] == "GetParameters"]
    assert any("/bookshelf/vm/database-url" in r["names"] for r in fetched), fetched


@pytest.mark.boots(*EXAMPLE_BOOTS)
def test_the_first_boot_migrates_the_hosts_postgresql_exactly_once(booted, example_database):
    first = booted("bookshelf-worker-beat").first("release-command")
    later = booted("bookshelf-web").first("release-command")
    for report in (first, later):
        assert (report["state"], report["result"]) == ("active", "success"), report
    applied = [line for line in first["journal"] if re.search(r"Applying \S+\.\S+\.\.\. OK", line)]
    assert [f"Applying shelf.{m}... OK" for m in SHELF_MIGRATIONS] == [
        line.strip() for line in applied if "shelf." in line
    ], first["journal"]
    assert any("No migrations to apply" in line for line in later["journal"]), later["journal"]
    rows = example_database.query(
        "SELECT app || '.' || name || ' ' || count(*) FROM django_migrations GROUP BY app, name ORDER BY app, name"
    ).splitlines()
    assert rows and all(row.endswith(" 1") for row in rows), rows
    assert [row.split()[0] for row in rows if row.startswith("shelf.")] == [f"shelf.{m}" for m in SHELF_MIGRATIONS]
    # Every migration the first boot applied is recorded, once.
    assert len(rows) == len(applied), (rows, applied)
    assert example_database.query("SELECT count(*) FROM shelf_book") == str(len(SEEDED_TITLES))


@pytest.mark.boots("bookshelf-web")
def test_gunicorn_serves_a_database_backed_page_and_a_hashed_static_file(booted):
    boot = booted("bookshelf-web")
    report = boot.first("bookshelf")
    page = report["page"]
    assert page["status"] == 200, report
    # The books come from PostgreSQL (the data migration's rows).
    assert all(title in page["body"] for title in SEEDED_TITLES), page["body"]
    assert 'data-release="vm-bookshelf"' in page["body"], page["body"]
    (stylesheet,) = report["stylesheet"]
    assert HASHED_STYLESHEET.match(stylesheet), stylesheet
    assert report["static"]["status"] == 200 and report["static"]["type"].startswith("text/css"), report
    assert report["static"]["bytes"] > 0, report
    assert RELEASE_COMMAND_UNIT in boot.first("ready")["units"]
