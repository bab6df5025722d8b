"""app.releaseCommand's default, `python manage.py migrate --noinput`, on a Django project with a
real database: examples/bookshelf (a schema migration and a data migration) against a private
TLS PostgreSQL, on a web and a Beat instance with APP_ROOTs of their own, each release installed
by the machine's own app-release (release 1 by app-release.service at boot, release 2 by the
deploy's install script, both from the S3 stand-in).

- Two instances boot at once: the rendered app-release-command.service's command line on both,
  the lock and the done record in the real TLS Redis broker; the database shows each migration
  applied once and the seeded rows once, and only one instance printed the migration's output.
- A release whose migration fails: `ops deploy`'s own Rollout, run against these instances
  through the ops scripts, stops at its release-command step with the migration's error; both
  instances still run release 1, the live release parameter is unchanged, release 2 has no done
  record and PostgreSQL rolled the migration's schema change back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from e2e_harness.deployment import Deployment, build_release, upload_release
from e2e_harness.example_project import EXAMPLE, example_database, example_stack
from e2e_harness.postgres_server import PostgresServer
from e2e_harness.release_command import boot_run, executor_for, instance, instances, records, together
from e2e_harness.units import parse_env_file

from config import AppSettings
from ops.live_release import LiveReleaseParameter
from ops.rollout import Rollout, RolloutFailed, Timeouts
from ops.scripts import current_release_script
from ops.state import StateStore
from ops.verify import VerifyOptions
from ops.web_drain import WebDrain
from userdata import layout

DEFAULT_RELEASE_COMMAND = next(f.default for f in msgspec.structs.fields(AppSettings) if f.name == "release_command")
FAILING_RELEASE = "2026.12.02-bad-migration"
REFUSAL = "bookshelf 0003 refuses to run"
# Release 2's migration: a column first, then an error, in one transaction (PostgreSQL's DDL is
# transactional and Django runs each migration atomically), so the column must not survive.
FAILING_MIGRATION = f"""from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shelf", "0002_seed_books")]
    operations = [
        migrations.AddField("book", "subtitle", models.CharField(max_length=200, default="")),
        migrations.RunSQL("DO $$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$", migrations.RunSQL.noop),
    ]
"""


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresServer]:
    with example_database(address_salt=11) as server:
        yield server


@pytest.fixture(scope="module")
def stack(database: PostgresServer) -> Iterator[Deployment]:
    """A web and a Beat instance, secrets fetched and release 1 installed by their oneshots, the
    release command not run yet. Not the sample stack file's `check`: the default."""
    deployment = example_stack(
        database,
        worker_count=1,
        web_count=1,
        address_salt=12,
        own_app_roots=True,
        config={"app.releaseCommand": DEFAULT_RELEASE_COMMAND},
    )
    try:
        for machine in deployment.machines.values():
            machine.run_oneshot(layout.SECRETS_UNIT)
            machine.run_oneshot(layout.RELEASE_UNIT)
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def first_boots(stack: Deployment) -> list[str]:
    """Both instances' app-release-command.service started at once on release 1: what each logged."""
    return [str(log) for log in together(boot_run(stack.web), boot_run(stack.beat_machine))]


def applied_migrations(database: PostgresServer) -> list[str]:
    return database.query("SELECT app || '.' || name FROM django_migrations ORDER BY app, name").splitlines()


def shelf_state(database: PostgresServer) -> dict[str, str]:
    """What release 1's migrations leave: the seeded books (slug: copies) and shelf_book's columns."""
    return {
        "books": database.query(
            "SELECT string_agg(slug || ':' || n, ' ' ORDER BY slug) FROM "
            "(SELECT slug, count(*) AS n FROM shelf_book GROUP BY slug) AS s"
        ),
        "columns": database.query(
            "SELECT string_agg(column_name, ' ' ORDER BY column_name) FROM information_schema.columns "
            "WHERE table_name = 'shelf_book'"
        ),
    }


def test_two_instances_booting_together_migrate_once(
    stack: Deployment, database: PostgresServer, first_boots: list[str]
) -> None:
    assert DEFAULT_RELEASE_COMMAND == "python manage.py migrate --noinput"
    logs = first_boots
    assert not [log for log in logs if log.startswith("FAILED")], logs

    applied = applied_migrations(database)
    assert len(applied) == len(set(applied)), applied  # each migration recorded once
    assert [name for name in applied if name.startswith("shelf.")] == ["shelf.0001_initial", "shelf.0002_seed_books"]
    assert shelf_state(database)["books"] == (
        "a-pattern-language:1 the-mythical-man-month:1 the-soul-of-a-new-machine:1"
    )  # the data migration's rows, once each

    # One instance ran migrate and printed its output; the other waited for its done record.
    running = f"release {stack.release}: running {DEFAULT_RELEASE_COMMAND}"
    assert [running in log for log in logs].count(True) == 1, logs
    ran, waited = (logs[0], logs[1]) if running in logs[0] else (logs[1], logs[0])
    runner = stack.web if ran is logs[0] else stack.beat_machine
    done = str(records(stack, stack.release)["done"])
    assert done.endswith(f" on {runner.hostname}"), done
    assert "Applying shelf.0001_initial... OK" in ran and "Applying shelf.0002_seed_books... OK" in ran
    assert f"release {stack.release}: the command exited 0" in ran
    assert "Applying" not in waited and "running" not in waited, waited
    assert f"release {stack.release}: already ran ({done})" in waited

    # A reboot of the instance that ran it: nothing runs again.
    (again,) = together(boot_run(runner))
    assert f"release {stack.release}: already ran ({done})" in str(again) and "Applying" not in str(again)
    assert applied_migrations(database) == applied


def test_a_failing_migration_stops_the_deploy_with_every_instance_on_release_1(
    stack: Deployment, database: PostgresServer, first_boots: list[str], tmp_path: Path
) -> None:
    release_1, before = stack.release, shelf_state(database)
    assert "subtitle" not in before["columns"].split()
    # Release 2: the example with one more migration, built and uploaded as the operator does.
    source = tmp_path / "bookshelf"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "src/shelf/migrations/0003_subtitle.py").write_text(FAILING_MIGRATION)
    release_env = parse_env_file(stack.web.host_path(layout.RELEASE_ENV).read_text())
    artifact = build_release(FAILING_RELEASE, tmp_path / "artifacts", app=source)
    upload_release(stack.store, release_env, artifact)
    digest = Path(f"{artifact}.sha256").read_text().split()[0]  # what the builder printed

    live = LiveReleaseParameter(stack.store.client("ssm"), release_env["RELEASE_PARAMETER"])
    printed: list[str] = []
    rollout = Rollout(
        kind="deploy",
        release=FAILING_RELEASE,
        sha256=digest,
        executor=executor_for(stack),
        instances=instances(stack),
        timeouts=Timeouts(),
        verify_options=VerifyOptions(),
        store=StateStore(tmp_path / "state", "django-stack", "prod"),
        live=live,
        identity_flags="--stack prod",
        out=printed.append,
        drain=WebDrain(autoscaling=None, elbv2=None, out=printed.append),  # no switch is reached
    )
    with pytest.raises(RolloutFailed) as stopped:
        rollout.run()
    report = str(stopped.value)
    assert report.startswith(f"deploy {FAILING_RELEASE} STOPPED at step 'release command': "), report
    assert REFUSAL in report  # the migration's own error, from PostgreSQL through migrate's traceback
    assert f"release {FAILING_RELEASE}: the command exited 1" in report
    assert "Beat: running (never paused)" in report
    assert len([line for line in printed if f": installing {FAILING_RELEASE} ..." in line]) == 2, printed

    # Nothing switched: every instance still runs release 1, the live release is release 1.
    executor = executor_for(stack)
    for machine in stack.machines.values():
        current = executor.run(instance(machine), "current", current_release_script(), 60)
        assert current.stdout.strip().splitlines()[-1] == release_1, (machine.hostname, current)
        assert machine.host_path(f"{layout.RELEASES_DIR}/{FAILING_RELEASE}/.installed").is_file()
    assert live.ssm.get_parameter(Name=live.name)["Parameter"]["Value"] == release_1
    assert records(stack, FAILING_RELEASE) == {"lock": None, "done": None}
    # And the database is release 1's: no 0003 recorded, its column rolled back with it.
    assert "shelf.0003_subtitle" not in applied_migrations(database)
    assert shelf_state(database) == before
