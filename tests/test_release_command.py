"""app.releaseCommand from the stack file to the machines: refused in one line naming the key,
rendered into /etc/app/release-command.env, and app-release-command.service ordered before every
app unit, which cannot start without it (docs/release-command.md)."""

from __future__ import annotations

import json

import pytest

from config import load_settings
from tests.conftest import prod_config_values
from tests.test_config import errors_for
from tests.test_userdata import files_by_path, machine, unit
from userdata import layout, render

RULE = '"" (none) or one shell command line of up to 4096 characters, no single quotes or line breaks'


def settings_with(**app: object):
    values = prod_config_values()
    values["app"] = json.dumps(json.loads(values["app"]) | app)
    return load_settings(values, stack="prod", region="eu-west-1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("python manage.py shell -c 'x'", f"""got "python manage.py shell -c 'x'"; use {RULE}"""),
        ("   ", f"got '   '; use {RULE}"),
        ("migrate\nrm -rf /", f"got 'migrate\\nrm -rf /'; use {RULE}"),
        ("x" * 4097, f"use {RULE}"),
        (7, 'got 7; a number where text is expected; quote it in the stack file: "7"'),
    ],
    ids=["single quote", "only spaces", "line break", "too long", "a number"],
)
def test_a_bad_release_command_is_one_line_naming_the_key_and_nothing_is_created(value, expected) -> None:
    message = errors_for({"app.releaseCommand": value})
    (line,) = message.removeprefix("invalid stack config (prod):").strip().splitlines()
    assert line.startswith("django-stack:app.releaseCommand: ")
    assert expected in line


def test_the_default_is_migrate_and_an_empty_command_is_rendered_as_none() -> None:
    values = prod_config_values()
    app = json.loads(values["app"])
    del app["releaseCommand"]  # the sample stacks set `check`: the sample has no database
    values["app"] = json.dumps(app)
    default = load_settings(values, stack="prod", region="eu-west-1")
    assert render.release_command_env(default) == {
        "RELEASE_COMMAND": "python manage.py migrate --noinput",
        "RELEASE_COMMAND_KEYS": "app:release-command:",
    }
    files = files_by_path(machine(settings_with(releaseCommand="")))
    env = files[layout.RELEASE_COMMAND_ENV]
    assert (env.content, env.owner, env.permissions) == (
        "RELEASE_COMMAND=\nRELEASE_COMMAND_KEYS=app:release-command:\n",
        "root:root",
        "0640",
    )
    chained = settings_with(releaseCommand="python manage.py migrate --noinput && python manage.py createcachetable")
    assert files_by_path(machine(chained))[layout.RELEASE_COMMAND_ENV].content.startswith(
        "RELEASE_COMMAND='python manage.py migrate --noinput && python manage.py createcachetable'\n"
    )


@pytest.mark.parametrize(("role", "beat"), [("web", False), ("worker", False), ("worker", True)])
def test_every_app_unit_requires_the_release_command_which_runs_after_the_secrets_and_the_release(
    prod_settings, role, beat
) -> None:
    inputs = machine(prod_settings, role, beat)
    units = render.unit_files(inputs)
    for name in render.app_units(inputs):
        section = unit(units[name])["Unit"]
        assert layout.RELEASE_COMMAND_UNIT in section["Requires"].split(), name
        assert layout.RELEASE_COMMAND_UNIT in section["After"].split(), name
    text = units[layout.RELEASE_COMMAND_UNIT]
    parsed = unit(text)
    assert parsed["Unit"]["Requires"].split() == [layout.SECRETS_UNIT, layout.RELEASE_UNIT]
    assert set(parsed["Unit"]["After"].split()) >= {layout.SECRETS_UNIT, layout.RELEASE_UNIT}
    service = parsed["Service"]
    assert (service["Type"], service["RemainAfterExit"], service["User"], service["Group"]) == (
        "oneshot",
        "yes",
        layout.USER,
        layout.GROUP,
    )
    assert service["ExecStart"] == f"{layout.APP_BIN}/python {layout.RELEASE_COMMAND_BIN}"
    env_files = [line.removeprefix("EnvironmentFile=") for line in text.splitlines() if line.startswith("Environ")]
    assert env_files == [layout.APP_ENV, layout.VERSION_ENV, layout.SECRETS_ENV, layout.RELEASE_COMMAND_ENV]
    # It comes after both oneshots in the boot's `systemctl enable --now` and before the app units.
    enabled = render.units_to_enable(inputs)
    assert enabled.index(layout.RELEASE_COMMAND_UNIT) == 2
    assert all(enabled.index(name) > 2 for name in render.app_units(inputs))
    script = files_by_path(inputs)[layout.RELEASE_COMMAND_BIN]
    assert (script.owner, script.permissions) == ("root:root", "0755")
