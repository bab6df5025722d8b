"""deploy and rollback through main(): the order of what is sent to which instance, the bounded
wait for tasks in flight, a stop at each failing step with the stack's state printed, and the
recorded previous release. EC2 and SSM requests go to moto; command results are
injected at the boto3 boundary (ScriptedSsm + FakeInstances), since moto runs no commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ops.cli import main
from ops.live_release import default_parameter
from ops.rollout import RESTART_MARGIN_SECONDS
from ops.scripts import install_release_script, release_command_script, stop_timeouts_script, switch_release_script
from ops.state import RolloutRecord, StateStore
from tests.ops.conftest import DIGESTS
from tests.ops.fake_instances import FakeInstances, check_lines
from tests.ops.helpers import Run, VirtualClock, run_ops, waits_on

WEB0, WEB1, WORKER1, BEAT = "prod-web-0", "prod-web-1", "prod-worker-0", "prod-worker-beat-0"
R1, R2 = DIGESTS["r1"], DIGESTS["r2"]  # the artifacts' digests build-release wrote


def fake(stack: dict[str, str], **options: Any) -> FakeInstances:
    return FakeInstances({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()}, **options)


def deploy(
    stack, ssm_client, capsys, state_dir: Path, answers: FakeInstances, *extra: str, command: str = "deploy"
) -> Run:
    argv = [command, "--stack", "prod", "--state-dir", str(state_dir), "--poll-interval", "0.01", *extra]
    return run_ops(argv, answers, ssm_client, capsys)


def named(stack: dict[str, str], run: Run) -> list[tuple[str, str]]:
    names = {iid: name for name, iid in stack.items()}
    return [(names[iid], purpose) for iid, purpose in run.purposes()]


def expected_sequence(release: str, command: str = "deploy") -> list[tuple[str, str]]:
    reads = [(name, "read current release") for name in (WEB0, WEB1, WORKER1, BEAT)]
    stop_timeouts = [(name, "read stop timeouts") for name in (WEB0, WEB1, WORKER1, BEAT)]
    # Installed everywhere, then the release command once (deploy only), before any switch.
    installs = [(name, f"install {release}") for name in (WEB0, WEB1, WORKER1, BEAT)]
    release_command = [(BEAT, f"release command {release}")] if command == "deploy" else []
    switch = [
        step
        for name, role in ((WORKER1, "worker"), (BEAT, "worker"), (WEB0, "web"), (WEB1, "web"))
        for step in ((name, f"activate {release}"), (name, f"verify {role}"))
    ]
    verify_all = [(WEB0, "verify web"), (WEB1, "verify web"), (WORKER1, "verify worker"), (BEAT, "verify worker")]
    pause, drain, resume = (BEAT, "beat pause"), (WORKER1, "tasks in flight"), (BEAT, "beat resume")
    # reads again at the end: the confirmation
    return [*reads, *stop_timeouts, *installs, *release_command, pause, drain, *switch, *verify_all, *reads, resume]


def test_deploy_runs_the_runbook_in_order(stack, ssm_client, capsys, tmp_path) -> None:
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2")
    assert run.code == 0, run.err
    assert named(stack, run) == expected_sequence("r2")
    assert run.out.splitlines()[-1] == "deploy r2: done; every instance runs r2, Beat is running"


def test_deploy_sends_the_release_scripts_each_role_needs(stack, ssm_client, capsys, tmp_path) -> None:
    run = deploy(
        stack,
        ssm_client,
        capsys,
        tmp_path,
        fake(stack),
        "--release",
        "r2",
        "--install-timeout",
        "600",
        "--restart-timeout",
        "1900",
    )
    sent = {(s.instance_id, s.purpose): s for s in run.ssm.sent}
    install = sent[(stack[WORKER1], "install r2")]
    assert (install.script, install.execution_timeout) == (install_release_script("r2", DIGESTS["r2"]), "600")
    worker_switch = sent[(stack[WORKER1], "activate r2")]
    assert (worker_switch.script, worker_switch.execution_timeout) == (switch_release_script("worker", "r2"), "1900")
    assert sent[(stack[WEB0], "activate r2")].script == switch_release_script("web", "r2")
    assert "units=gunicorn.service\nsystemctl restart $units\n" in switch_release_script("web", "r2")
    assert "systemctl restart $units" in switch_release_script("worker", "r2")


def test_deploy_waits_for_tasks_in_flight_and_says_which(stack, ssm_client, capsys, tmp_path) -> None:
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack, busy=2), "--release", "r2")
    assert run.code == 0, run.err
    assert [p for _, p in run.purposes()].count("tasks in flight") == 3
    assert (
        run.out.count("waiting for 1 active, 0 reserved: myapp.tasks.generate_report[6f1c] on default@ip-10-0-1-5") == 2
    )


def state_lines(run: Run) -> list[str]:
    return [" ".join(line.split()) for line in run.err.splitlines()]


def test_tasks_still_running_at_the_drain_timeout_stop_the_deploy_before_any_switch(
    stack, ssm_client, capsys, tmp_path, monkeypatch
) -> None:
    # The queues asked a fifth of a second apart (the last --poll-interval counts): a few rounds
    # in the 1 s, not the ninety that 0.01 s made.
    busy = fake(stack, busy=10**6)
    waits_on(clock := VirtualClock(), monkeypatch)
    run = deploy(
        stack, ssm_client, capsys, tmp_path, busy, "--release", "r2", "--drain-timeout", "1", "--poll-interval", "0.2"
    )
    assert run.code == 1 and clock.slept >= 1  # the whole second waited out
    lines = state_lines(run)
    assert lines[0] == (
        "deploy r2 STOPPED at step 'wait for tasks in flight': still running after 1 s: "
        "1 active, 0 reserved: myapp.tasks.generate_report[6f1c] on default@ip-10-0-1-5"
    )
    assert not any(p.startswith("activate") for _, p in run.purposes())
    assert f"Beat: PAUSED (celery-beat.service stopped on {stack[BEAT]} ({BEAT}))" in lines


# Each step that can fail, where, and the release each instance is on once it has.
FAILURES = [
    ("read current release", WORKER1, "read releases", {WORKER1: "not read", BEAT: "not read"}),
    ("beat pause", BEAT, "pause Beat", {}),
    ("install r2", WORKER1, "install", {}),
    ("install r2", WEB1, "install", {}),
    ("release command r2", BEAT, "release command", {}),
    ("activate r2", BEAT, "activate and restart", {WORKER1: "r2"}),
    ("verify worker", WORKER1, "verify", {WORKER1: "r2"}),
    ("verify web", WEB0, "verify", {WORKER1: "r2", BEAT: "r2", WEB0: "r2"}),
    ("beat resume", BEAT, "resume Beat", {WORKER1: "r2", BEAT: "r2", WEB0: "r2", WEB1: "r2"}),
]


@pytest.mark.parametrize("purpose, where, step, switched", FAILURES, ids=[f[2] + "@" + f[1] for f in FAILURES])
def test_a_failing_step_stops_the_deploy_and_prints_the_stacks_state(
    stack, ssm_client, capsys, tmp_path, purpose, where, step, switched
) -> None:
    failure = ("Failed", 1, "", "app-release: something broke\n")
    if purpose.startswith("verify"):
        failure = (
            "Failed",
            1,
            check_lines(purpose.split()[1], {"services": "not active: gunicorn.service=failed"}),
            "",
        )
    answers = fake(stack, failures={(purpose, stack[where]): failure})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    lines = state_lines(run)
    assert lines[0].startswith(f"deploy r2 STOPPED at step '{step}': ")
    # The release command's output comes between the two (its own test checks it).
    state = lines.index("state of the stack now:")
    assert state == 1 or step == "release command"
    for name in (WEB0, WEB1, WORKER1, BEAT):
        row = next(line for line in lines[state + 1 :] if f"({name})" in line)
        expected = switched.get(name, "r1")
        assert f"release {expected}" in row
        assert row.endswith(f"<- {step} failed here") == (name == where and step not in ("read releases", "verify all"))
    beat_line = next(line for line in lines if line.startswith("Beat:"))
    before_pause = ("read releases", "install", "release command")
    assert beat_line.startswith(
        "Beat: running" if step in before_pause else "Beat: UNKNOWN" if step == "pause Beat" else "Beat: PAUSED"
    )
    assert f"to continue: python -m ops deploy --release r2 --sha256 {R2} --stack prod" in lines
    assert (
        f"to roll back: python -m ops rollback --release r1 --sha256 {R1} --stack prod" in lines
        or step == "read releases"
    )
    # Nothing is sent after the failing command.
    (failed_at,) = [i for i, sent in enumerate(run.purposes()) if sent == (stack[where], purpose)]
    after = run.purposes()[failed_at + 1 :]
    assert after == ([(stack[where], "read current release")] if step == "activate and restart" else [])


def test_aws_refusing_a_call_mid_deploy_stops_with_the_state_report(stack, ssm_client, capsys, tmp_path) -> None:
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "GetCommandInvocation"
    )
    answers = fake(stack, failures={("install r2", stack[BEAT]): denied})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    lines = state_lines(run)
    assert lines[0] == (
        f"deploy r2 STOPPED at step 'install': install r2 on {stack[BEAT]} ({BEAT}): NotRun (exit -1): "
        "SSM refused: An error occurred (AccessDeniedException) when calling the GetCommandInvocation "
        "operation: not authorized"
    )
    assert "Beat: running (never paused)" in lines  # installs come before Beat is paused


def test_a_failed_check_in_the_final_verify_names_instance_and_check(stack, ssm_client, capsys, tmp_path) -> None:
    # Each instance passes its own verify; the second pass over all of them finds web-1 broken.
    calls = {"n": 0}
    answers = fake(stack)
    healthy = answers.__call__

    def second_web1_verify_fails(instance: str, purpose: str, script: str):
        if (instance, purpose) == (stack[WEB1], "verify web"):
            calls["n"] += 1
            if calls["n"] == 2:
                return "Failed", 1, check_lines("web", {"healthcheck": "TimeoutError: The operation timed out."}), ""
        return healthy(instance, purpose, script)

    run = deploy(stack, ssm_client, capsys, tmp_path, second_web1_verify_fails, "--release", "r2")
    assert run.code == 1
    assert state_lines(run)[0] == (
        "deploy r2 STOPPED at step 'verify all': healthcheck on "
        f"{stack[WEB1]} ({WEB1}): TimeoutError: The operation timed out."
    )
    assert run.purposes()[-1] == (stack[BEAT], "verify worker")  # Beat not resumed


def test_a_failed_activate_reports_the_release_the_instance_really_has(stack, ssm_client, capsys, tmp_path) -> None:
    answers = fake(stack)
    healthy = answers.__call__

    def activated_then_restart_failed(instance: str, purpose: str, script: str):
        if (instance, purpose) == (stack[WORKER1], "activate r2"):
            answers.releases[instance] = "r2"  # the symlink moved, the restart failed
            return "Failed", 1, "", "Job for celery-worker-default.service failed.\n"
        return healthy(instance, purpose, script)

    run = deploy(stack, ssm_client, capsys, tmp_path, activated_then_restart_failed, "--release", "r2")
    row = next(line for line in state_lines(run)[2:] if f"({WORKER1})" in line)
    assert row == f"{stack[WORKER1]} ({WORKER1}) worker release r2 <- activate and restart failed here"
    assert "Job for celery-worker-default.service failed." in state_lines(run)[0]


def test_deploy_records_the_release_it_replaced_and_rollback_returns_to_it(stack, ssm_client, capsys, tmp_path) -> None:
    answers = fake(stack)
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 0
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r2", "r1", True, R2, R1)
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, command="rollback")
    assert run.code == 0, run.err
    assert named(stack, run) == expected_sequence("r1", command="rollback")
    assert set(answers.releases.values()) == {"r1"}
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r1", "r2", True, R1, R2)


def test_continuing_an_interrupted_deploy_keeps_the_way_back_and_skips_switched_instances(
    stack, ssm_client, capsys, tmp_path
) -> None:
    broken = ("Failed", 1, check_lines("web", {"healthcheck": "TimeoutError"}), "")
    answers = fake(stack, failures={("verify web", stack[WEB0]): broken})
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 1
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r2", "r1", False, R2, R1)
    answers.failures.clear()
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 0, run.err
    assert (stack[WORKER1], "activate r2") not in run.purposes()  # already on r2: verified only
    assert f"{stack[WORKER1]} ({WORKER1}): checking the digest of r2 ..." in run.out  # its copy is r2's artifact
    assert f"{stack[WORKER1]} ({WORKER1}): already on r2; verifying only" in run.out
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r2", "r1", True, R2, R1)


def test_repeating_a_finished_deploy_keeps_the_recorded_way_back(stack, ssm_client, capsys, tmp_path) -> None:
    answers = fake(stack)
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 0
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 0
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r2", "r1", True, R2, R1)


def test_rollback_without_a_recorded_release_is_refused_before_anything_is_sent(
    stack, ssm_client, capsys, tmp_path
) -> None:
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), command="rollback")
    assert run.code == 2
    assert run.err == (
        f"python -m ops: error: --release: no previous release recorded for stack prod in "
        f"{tmp_path / 'prod.json'}; name the release to go back to\n"
    )
    assert run.ssm.sent == [] and ssm_client.list_commands()["Commands"] == []


def test_deploy_refuses_a_stack_without_exactly_one_beat_before_anything_is_sent(
    stack, program_tags, ssm_client, capsys, tmp_path
) -> None:
    from tests.ops.conftest import launch

    launch(next(t for t in program_tags if t.get("celery-beat")) | {"Name": "prod-worker-beat-2"})
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2")
    assert run.code == 1
    assert "expected exactly one running instance tagged celery-beat=true, found 2" in run.err
    assert run.ssm.sent == []


def test_the_restart_timeout_is_each_instances_longest_stop_timeout_plus_a_margin(
    stack, ssm_client, capsys, tmp_path
) -> None:
    # prod's long queue: hardTimeLimit 1800 + stopMarginSeconds 60 = TimeoutStopSec 1860; gunicorn 30 + 30.
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2")
    assert run.code == 0, run.err
    sent = {(s.instance_id, s.purpose): s for s in run.ssm.sent}
    assert sent[(stack[WORKER1], "read stop timeouts")].script == stop_timeouts_script("worker")
    assert sent[(stack[WORKER1], "activate r2")].execution_timeout == str(1860 + RESTART_MARGIN_SECONDS)
    assert sent[(stack[WEB0], "activate r2")].execution_timeout == str(60 + RESTART_MARGIN_SECONDS)


def test_a_restart_timeout_shorter_than_a_units_stop_timeout_stops_before_beat_is_paused(
    stack, ssm_client, capsys, tmp_path
) -> None:
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2", "--restart-timeout", "900")
    assert run.code == 1
    assert run.err.splitlines()[0] == (
        "deploy r2 STOPPED at step 'read stop timeouts': --restart-timeout 900 is shorter than "
        f"celery-worker-long.service's TimeoutStopSec (1860 s) on {stack[WORKER1]} ({WORKER1}): SSM would cancel "
        "a warm restart; leave it out or give at least 1860"
    )
    assert "  Beat: running (never paused)" in run.err
    assert {purpose for _, purpose in run.purposes()} == {"read current release", "read stop timeouts"}


def test_a_stop_timeout_beyond_ssms_maximum_stops_before_beat_is_paused(stack, ssm_client, capsys, tmp_path) -> None:
    huge = ("Success", 0, "celery-worker-long.service 172800\n", "")
    answers = fake(stack, failures={("read stop timeouts", stack[WORKER1]): huge})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    assert (
        f"celery-worker-long.service on {stack[WORKER1]} ({WORKER1}) may take 172800 s to stop; SSM allows a "
        "command at most 172800 s" in run.err.splitlines()[0]
    )
    assert (stack[BEAT], "beat pause") not in run.purposes()


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"target": "r2", "previous": "r1", "comp', "Unterminated string"),
        (b"\xff\xfe", "codec can't decode"),
        (
            b'{"target": "r2", "previous": "r1; rm -rf ~", "complete": true}',
            "previous 'r1; rm -rf ~' is not a release name",
        ),
        (b'{"target": "r2", "previous": 7, "complete": true}', "previous 7 is not a release name"),
        (b'["r2", "r1"]', "expected an object with release, previous, complete, sha256 and previous_sha256"),
    ],
)
def test_a_state_file_the_tool_did_not_write_is_one_line_and_nothing_is_sent(
    stack, ssm_client, capsys, tmp_path, content, detail
) -> None:
    (tmp_path / "prod.json").write_bytes(content)
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), command="rollback")
    assert run.code == 1
    assert len(run.err.splitlines()) == 1
    assert run.err.startswith(
        f"python -m ops: failed: state file {tmp_path / 'prod.json'} is not a record this tool wrote ("
    )
    assert detail in run.err
    assert run.ssm.sent == []


def test_a_state_file_written_before_the_release_field_was_renamed_still_reads(tmp_path) -> None:
    # Operators' machines keep state files from earlier versions: {"target": ...} is the release.
    (tmp_path / "prod.json").write_text('{"target": "r2", "previous": "r1", "complete": true}\n')
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r2", "r1", complete=True)


# --- the live release parameter -------------------------------------------------------------


def live_value(ssm_client, release_parameter: str) -> str:
    return ssm_client.get_parameter(Name=release_parameter)["Parameter"]["Value"]


def test_the_tools_default_parameter_is_the_one_the_program_creates(release_parameter) -> None:
    assert default_parameter("django-stack", "prod") == release_parameter


def test_deploy_and_rollback_record_the_live_release_after_verify(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    answers = fake(stack)
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 0, run.err
    assert live_value(ssm_client, release_parameter) == f"r2@sha256:{R2}"
    assert f"  live release ({release_parameter}): r1@sha256:{R1}" in run.out  # read before anything changed
    assert f"live release ({release_parameter}): r2@sha256:{R2}; new instances boot it" in run.out
    described = ssm_client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [release_parameter]}])[
        "Parameters"
    ]
    assert [p["Type"] for p in described] == ["String"]
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, command="rollback").code == 0
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"


def test_a_failed_deploy_leaves_the_live_release_alone(stack, ssm_client, capsys, tmp_path, release_parameter) -> None:
    answers = fake(
        stack, failures={("verify web", stack[WEB1]): ("Failed", 1, check_lines("web", {"healthcheck": "x"}), "")}
    )
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 1
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"


def test_an_instance_that_fell_back_is_not_recorded_as_switched(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    class RebootedMidRollout(FakeInstances):
        """WORKER1 reboots after its switch and boots the live release, still r1."""

        def __call__(self, instance: str, purpose: str, script: str):
            answer = super().__call__(instance, purpose, script)
            if purpose == "verify web" and instance == stack[WEB1]:
                self.releases[stack[WORKER1]] = "r1"
            return answer

    answers = RebootedMidRollout({iid: "web" if "-web-" in name else "worker" for name, iid in stack.items()})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    assert f"STOPPED at step 'confirm releases': not on r2: {stack[WORKER1]} ({WORKER1})" in run.err
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"


def test_a_parameter_that_is_not_a_release_name_stops_the_deploy_before_anything_changes(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    ssm_client.put_parameter(Name=release_parameter, Value="../etc", Type="String", Overwrite=True)
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2")
    assert run.code == 1
    assert (
        f"STOPPED at step 'read releases': {release_parameter} holds '../etc', which is not a release name" in run.err
    )
    assert (stack[BEAT], "beat pause") not in run.purposes()


# --- the release command (app.releaseCommand) ------------------------------------------------


def test_deploy_runs_the_release_command_once_after_every_install_and_before_any_switch(
    stack, ssm_client, capsys, tmp_path
) -> None:
    run = deploy(
        stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2", "--release-command-timeout", "900"
    )
    assert run.code == 0, run.err
    purposes = [purpose for _, purpose in run.purposes()]
    (command_at,) = [i for i, purpose in enumerate(purposes) if purpose == "release command r2"]
    installs = [i for i, purpose in enumerate(purposes) if purpose == "install r2"]
    switches = [i for i, purpose in enumerate(purposes) if purpose == "activate r2"]
    assert len(installs) == len(switches) == 4
    assert max(installs) < command_at < min(switches)
    (sent,) = [s for s in run.ssm.sent if s.purpose == "release command r2"]
    assert (sent.instance_id, sent.script, sent.execution_timeout) == (stack[BEAT], release_command_script("r2"), "900")
    assert "app-release-command: release r2: the command exited 0 after 3 s" in run.out


def test_a_failing_release_command_stops_the_deploy_with_nothing_switched_and_its_output_shown(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    output = (
        "app-release-command: release r2: running python manage.py migrate --noinput\n"
        "  Applying shop.0002_price... \n"
        'django.db.utils.IntegrityError: column "price" of relation "shop_item" contains null values\n'
        "app-release-command: release r2: the command exited 1 after 2 s\n"
        "app-release-command: it failed: nothing recorded, the next attempt runs it again\n"
    )
    answers = fake(stack, failures={("release command r2", stack[BEAT]): ("Failed", 1, output, "")})
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    assert run.err.startswith(
        "deploy r2 STOPPED at step 'release command': Failed (exit 1); nothing switched; its output:\n" + output
    )
    assert not any(purpose.startswith(("activate", "beat")) for _, purpose in run.purposes())
    assert set(answers.releases.values()) == {"r1"}
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"
    assert "  Beat: running (never paused)" in run.err
    row = next(line for line in state_lines(run) if f"({BEAT})" in line)
    assert row.endswith("release r1 <- release command failed here")


def test_rollback_runs_no_release_command(stack, ssm_client, capsys, tmp_path) -> None:
    answers = fake(stack, release="r2")
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r1", command="rollback")
    assert run.code == 0, run.err
    assert not any(purpose.startswith("release command") for _, purpose in run.purposes())
    assert set(answers.releases.values()) == {"r1"}


# --- the artifact's digest, pinned with the live release (docs/release-digest.md) --------------


def test_deploy_pins_the_given_digest_in_every_install_and_in_the_live_release(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    given = "c" * 64
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r2", "--sha256", given)
    assert run.code == 0, run.err
    installs = [s.script for s in run.ssm.sent if s.purpose == "install r2"]
    assert installs == [install_release_script("r2", given)] * 4
    assert f"install r2 --sha256 {given}\n" in installs[0]
    assert live_value(ssm_client, release_parameter) == f"r2@sha256:{given}"


def test_rollback_pins_the_digest_the_live_release_had_not_a_local_build(
    stack, ssm_client, capsys, tmp_path, release_parameter, built_releases
) -> None:
    (built_releases / "r1.tar.gz.sha256").unlink()  # only the state remembers r1's digest
    answers = fake(stack)
    assert deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2").code == 0
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, command="rollback")
    assert run.code == 0, run.err
    assert [s.script for s in run.ssm.sent if s.purpose == "install r1"] == [install_release_script("r1", R1)] * 4
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"
    assert StateStore(tmp_path, "django-stack", "prod").load() == RolloutRecord("r1", "r2", True, R1, R2)


def test_a_deploy_without_a_known_digest_is_refused_in_one_line_before_anything_is_sent(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    run = deploy(stack, ssm_client, capsys, tmp_path, fake(stack), "--release", "r3")
    assert run.code == 2
    assert run.err == (
        "python -m ops: error: --sha256: no digest known for release r3; give the one build-release printed "
        "(its r3.tar.gz.sha256)\n"
    )
    assert run.ssm.sent == [] and live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal
        main(["deploy", "--stack", "prod", "--release", "r2", "--sha256", "ABC"])
    assert refused.value.code == 2
    assert capsys.readouterr().err == (
        "python -m ops deploy: error: argument --sha256: 'ABC' is not a SHA-256 (64 lowercase hex digits)\n"
    )


def test_an_instance_already_on_the_release_from_another_artifact_stops_the_deploy_before_any_switch(
    stack, ssm_client, capsys, tmp_path, release_parameter
) -> None:
    refused = f"app-release: release r2: installed from sha256 {'9' * 64}, expected {R2}; "
    answers = fake(stack, failures={("install r2", stack[WORKER1]): ("Failed", 1, "", refused + "not activated\n")})
    answers.releases[stack[WORKER1]] = "r2"  # installed and active earlier, from another artifact
    run = deploy(stack, ssm_client, capsys, tmp_path, answers, "--release", "r2")
    assert run.code == 1
    assert "STOPPED at step 'install'" in run.err and "not activated" in run.err
    assert (stack[WORKER1], "install r2") in run.purposes()
    assert not [purpose for _, purpose in run.purposes() if purpose.startswith("activate")]
    assert live_value(ssm_client, release_parameter) == f"r1@sha256:{R1}"
