"""`python -m ops exec` through main(): the instance it picks (EC2 discovery in moto), the script
it sends over SSM (moto keeps it), the output and exit code it passes on (the invocation's result
injected at the boto3 boundary, see ScriptedSsm), and bad input refused before anything is sent.
The script itself runs against a simulated instance in tests/e2e/test_release_command.py."""

from __future__ import annotations

from typing import Any

import pytest

from ops.cli import main
from ops.executor import SsmExecutor
from ops.scripts import exec_script
from tests.ops.conftest import ScriptedSsm
from tests.ops.helpers import run_ops

SHOW = ["manage.py", "showmigrations", "--plan"]


def answering(code: int, stdout: str = "", stderr: str = "", status: str | None = None) -> Any:
    def respond(instance: str, purpose: str, script: str) -> tuple[str, int, str, str]:
        assert purpose == "exec"
        return status or ("Success" if code == 0 else "Failed"), code, stdout, stderr

    return respond


def test_exec_runs_the_command_on_the_first_web_instance_and_passes_its_output_and_exit_code_on(
    stack, ssm_client, capsys
) -> None:
    run = run_ops(
        ["exec", "--stack", "prod", "--command-timeout", "600", "--", *SHOW],
        answering(3, "[X]  myapp.0001_initial\n", "CommandError: no such app\n"),
        ssm_client,
        capsys,
    )
    assert run.code == 3
    (sent,) = run.ssm.sent
    assert (sent.instance_id, sent.script, sent.execution_timeout) == (stack["prod-web-0"], exec_script(SHOW), "600")
    assert run.out == "[X]  myapp.0001_initial\n"
    assert run.err.splitlines() == [
        f"exec on {stack['prod-web-0']} (prod-web-0): manage.py showmigrations --plan",
        "CommandError: no such app",
        f"exit 3 on {stack['prod-web-0']} (prod-web-0)",
    ]


def test_exec_script_runs_manage_py_as_the_app_user_in_the_current_release_with_the_env_files() -> None:
    script = exec_script(["manage.py", "shell", "-c", "print('it is $HOME')"])
    assert script.endswith(
        "load_env\ncd /srv/app/current/src\nPATH=/srv/app/current/venv/bin:$PATH\n"
        "as_app python manage.py shell -c 'print('\"'\"'it is $HOME'\"'\"')'\n"
    )
    assert ". /etc/app/app.env\n  . /srv/app/current/version.env\n  . /run/app-secrets/secrets.env\n" in script
    assert exec_script(["celery", "inspect", "ping"]).endswith("as_app celery inspect ping\n")


@pytest.mark.parametrize(
    ("options", "chosen"),
    [(["--role", "worker"], "prod-worker-0"), (["--role", "web"], "prod-web-0"), ([], "prod-web-0")],
)
def test_exec_picks_the_first_instance_of_the_role(stack, ssm_client, capsys, options, chosen) -> None:
    run = run_ops(["exec", "--stack", "prod", *options, "--", "manage.py", "check"], answering(0), ssm_client, capsys)
    assert run.code == 0
    assert [sent.instance_id for sent in run.ssm.sent] == [stack[chosen]]


def test_exec_on_a_named_instance(stack, ssm_client, capsys) -> None:
    beat = stack["prod-worker-beat-0"]
    run = run_ops(
        ["exec", "--stack", "prod", "--instance", beat, "--", "manage.py", "check"], answering(0), ssm_client, capsys
    )
    assert run.code == 0
    assert [sent.instance_id for sent in run.ssm.sent] == [beat]
    assert run.err.endswith(f"exit 0 on {beat} (prod-worker-beat-0)\n")


def test_a_command_ssm_gave_up_on_exits_1_with_the_status(stack, ssm_client, capsys) -> None:
    run = run_ops(
        ["exec", "--stack", "prod", "--", "manage.py", "check"], answering(-1, status="TimedOut"), ssm_client, capsys
    )
    assert run.code == 1
    assert run.err.splitlines()[-1] == f"not run to the end on {stack['prod-web-0']} (prod-web-0): TimedOut (exit -1)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["exec", "--stack", "prod"],
            "python -m ops: error: exec: give the command after --, e.g. `-- manage.py showmigrations`",
        ),
        (
            ["exec", "--stack", "prod", "--"],
            "python -m ops: error: exec: give the command after --, e.g. `-- manage.py showmigrations`",
        ),
        (
            ["exec", "--stack", "prod", "--role", "db", "--", "manage.py", "check"],
            "python -m ops exec: error: argument --role: invalid choice: 'db' (choose from 'web', 'worker')",
        ),
        (
            ["exec", "--stack", "prod", "--instance", "i-0000000000000000f", "--", "manage.py", "check"],
            "python -m ops: error: --instance: i-0000000000000000f is not a running instance of the stack (running: ",
        ),
    ],
    ids=["no command", "nothing after --", "unknown role", "unknown instance"],
)
def test_bad_exec_input_is_one_line_and_nothing_is_sent(stack, ssm_client, capsys, argv, message) -> None:
    scripted = ScriptedSsm(ssm_client, answering(0))
    try:
        code = main(argv, executor=SsmExecutor(scripted, poll_interval=0.01))
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith(message)
    assert scripted.sent == [] and ssm_client.list_commands()["Commands"] == []
