"""The harness reads units and environment files as systemd does; if it did not, the e2e tests
would start something other than what the machines run."""
from __future__ import annotations

from e2e_harness.units import parse_command, parse_env_file, read_service


def test_env_file_strips_quotes_and_keeps_json_intact() -> None:
    text = "# comment\nA=plain\nB='{\"x\": {\"queue\": \"long\"}}'\nC=\"say \\\"hi\\\"\"\n; other comment\n"
    assert parse_env_file(text) == {"A": "plain", "B": '{"x": {"queue": "long"}}', "C": 'say "hi"'}


def test_braced_variable_is_one_word_and_bare_variable_splits() -> None:
    env = {"QUEUE": "default", "OPTS": "--a 1  --b"}
    command = parse_command("-/bin/prog --queues ${QUEUE} $OPTS x${QUEUE}y", env)
    assert command.argv == ("/bin/prog", "--queues", "default", "--a", "1", "--b", "xdefaulty")
    assert command.ignore_failure and not command.privileged


def test_plus_prefix_runs_privileged() -> None:
    assert parse_command("+/usr/bin/install -d /srv", {}).privileged


def test_specifiers_and_repeated_directives() -> None:
    unit = ("[Service]\nEnvironmentFile=/etc/a.env\nEnvironmentFile=-/run/b.env\n"
            "ExecStart=/bin/celery --hostname q@%H --name %n\nTimeoutStopSec=5min\nKillMode=mixed\n")
    service = read_service("w.service", unit, hostname="prod-worker-1")
    assert service.environment_files == [("/etc/a.env", False), ("/run/b.env", True)]
    assert service.all("ExecStart") == ["/bin/celery --hostname q@prod-worker-1 --name w.service"]
    assert service.timeout_stop == 300 and service.kill_mode == "mixed"
